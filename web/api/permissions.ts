import type { Role } from '../../infra/tokens.ts';

// Which roles may do what. Every role reads the organisation data of its own subtree; changes and
// the sensitive lists (users, audit) are limited. The subtree rule applies on top of this table.
//   admin      - manages units, users and everything else in the subtree
//   operator   - technical staff: cameras, service points, SFU nodes
//   secretary  - a branch secretary: keeps branch and member records
//   leader, supervisor, clerk - read only here (they chair meetings, inspect, serve villagers)

export const permissions = {
  readUsers: ['admin', 'leader', 'supervisor'],
  readAudit: ['admin', 'supervisor'],
  writeUnits: ['admin'],
  importOrg: ['admin'],
  writeUsers: ['admin'],
  writeBranches: ['admin', 'secretary'],
  writeMembers: ['admin', 'secretary'],
  writeServicePoints: ['admin', 'operator'],
  writeCameras: ['admin', 'operator'],
  writeSfuNodes: ['admin', 'operator'],
} as const satisfies Record<string, readonly Role[]>;
