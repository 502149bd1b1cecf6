import { generateKeyPair } from '../../infra/tokens.ts';

/** One join-token key pair per test process: the API side signs, SFU nodes (here or in child processes) check. */
export const TEST_JOIN_KEYS = generateKeyPair();
export const TEST_JOIN_PUBLIC_PEM = TEST_JOIN_KEYS.publicKey.export({ type: 'spki', format: 'pem' }).toString();
