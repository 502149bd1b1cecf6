import { CONFIG_KEYS } from '../config.ts';
import { withHostConfigFile } from './host-config.ts';

/**
 * The environment with the host file (CONFIG_FILE) beneath it, for a role's settings outside the common
 * schema (RECORDER_CONFIG, HEALTH_PORT): read them from here, not from process.env, so the file counts.
 */
export function roleEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return withHostConfigFile(env, CONFIG_KEYS);
}
