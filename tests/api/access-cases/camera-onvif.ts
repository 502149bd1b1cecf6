import type { AccessCase } from './types.ts';

// ONVIF reads (web/api/routes/camera-onvif.ts): only operators/admins of the camera's (or unit's)
// subtree. County A's camera is rtsp://127.0.0.1:9/none and port 9 is closed: the allowed operator
// is answered 504 onvif_unreachable (the read ran), the outsider 404 before anything is asked.

export const cases: AccessCase[] = [
  {
    method: 'POST',
    route: '/api/cameras/{id}/onvif/discover',
    allowed: { role: 'operator', level: 'town' },
    build: (w) => ({ path: `/api/cameras/${w.A.camera}/onvif/discover`, body: { port: 9 } }),
    allowedStatus: [504],
  },
  {
    method: 'POST',
    route: '/api/units/{id}/onvif/probe',
    allowed: { role: 'operator', level: 'town' },
    build: (w) => ({ path: `/api/units/${w.A.units.town}/onvif/probe`, body: { host: '127.0.0.1', port: 9, username: 'u', password: 'p' } }),
    allowedStatus: [504],
  },
];
