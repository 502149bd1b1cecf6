import fs from 'node:fs';
import type { Config } from '../config.ts';
import type { ParentTlsOptions } from '../../sfu/cascade/ParentLink.ts';

/** How a node checks its wss:// parent: SFU_PARENT_FINGERPRINT (pin) or SFU_PARENT_CA_FILE; else the system's CAs. */
export function parentTlsFromConfig(config: Pick<Config, 'SFU_PARENT_FINGERPRINT' | 'SFU_PARENT_CA_FILE'>): ParentTlsOptions | undefined {
  if (!config.SFU_PARENT_FINGERPRINT && !config.SFU_PARENT_CA_FILE) return undefined;
  return {
    ...(config.SFU_PARENT_FINGERPRINT ? { fingerprint256: config.SFU_PARENT_FINGERPRINT.toUpperCase() } : {}),
    ...(config.SFU_PARENT_CA_FILE ? { ca: fs.readFileSync(config.SFU_PARENT_CA_FILE, 'utf8') } : {}),
  };
}
