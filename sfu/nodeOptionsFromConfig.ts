import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Config } from '../infra/config.ts';
import { childKeysIn, loadNodeKeys } from '../infra/secret.ts';
import { enrolledNodeAuth } from './cascade/EnrolmentChildKeys.ts';
import type { Logger } from '../infra/logger.ts';
import type { SfuNodeOptions } from './SfuNode.ts';
import { turnCredentialsFromConfig } from '../infra/turn/turn-from-config.ts';
import { parentTlsFromConfig } from '../infra/tls/parent-tls.ts';

/**
 * A node's settings from the validated configuration (standalone node or `npm start`): media ports,
 * and its place in the cascade when SFU_NODE_ID and SFU_UNIT_ID are set.
 */
export function nodeOptionsFromConfig(
  config: Config,
  /** cascadeSecret: from infra/secret.ts loadCascadeSecret (SFU_CASCADE_SECRET or generated), never the API's secret. */
  keys: { joinKey: KeyObject; cascadeSecret: string },
  logger: Logger,
): SfuNodeOptions {
  const pipeAnnounced = config.SFU_PIPE_ANNOUNCED_IP ?? config.SFU_ANNOUNCED_IP;
  const cascade: SfuNodeOptions['cascade'] =
    config.SFU_NODE_ID && config.SFU_UNIT_ID
      ? {
          nodeId: config.SFU_NODE_ID,
          unitId: config.SFU_UNIT_ID,
          secret: keys.cascadeSecret,
          ...(config.SFU_PARENT_URL ? { parentUrl: config.SFU_PARENT_URL } : {}),
          // wss:// parent: its certificate pinned (SFU_PARENT_FINGERPRINT) or CA-checked (SFU_PARENT_CA_FILE).
          ...(parentTlsFromConfig(config) ? { parentTls: parentTlsFromConfig(config)! } : {}),
          pipeListenIp: config.SFU_LISTEN_IP,
          admission: config.SFU_ADMISSION,
          ...(config.SFU_NODE_AUTH === 'key'
            ? {
                nodeKey: loadNodeKeys(config.DATA_DIR, config.SFU_NODE_KEY).privateKey,
                childKey: childKeysIn(config.SFU_CHILD_KEYS_DIR ?? path.join(config.DATA_DIR, 'child-keys')),
                // Enrolled through the API (sfu/bin/enrol.ts): key read at each attempt, children's keys from the API.
                ...enrolledNodeAuth(config.DATA_DIR, childKeysIn(config.SFU_CHILD_KEYS_DIR ?? path.join(config.DATA_DIR, 'child-keys')), logger, config.SFU_NODE_KEY),
              }
            : {}),
          ...(pipeAnnounced ? { pipeAnnouncedAddress: pipeAnnounced } : {}),
          // A capped uplink (satellite / 3G village): video crosses it as single-layer streams that fit.
          ...(config.SFU_UPLINK_KBPS ? { uplinkKbps: config.SFU_UPLINK_KBPS } : {}),
        }
      : undefined;
  const signalling = {
    ...(config.SFU_MAX_CONNECTIONS ? { maxConnections: config.SFU_MAX_CONNECTIONS } : {}),
    ...(config.SFU_MAX_CONNECTIONS_PER_ADDRESS ? { maxConnectionsPerAddress: config.SFU_MAX_CONNECTIONS_PER_ADDRESS } : {}),
    ...(config.SFU_JOIN_DEADLINE_MS ? { joinDeadlineMs: config.SFU_JOIN_DEADLINE_MS } : {}),
    ...(config.SFU_PING_INTERVAL_MS ? { pingIntervalMs: config.SFU_PING_INTERVAL_MS } : {}),
  };
  return {
    joinKey: keys.joinKey,
    signalling,
    plainRtp: config.SFU_PLAIN_RTP,
    // TURN_ENABLED: each join carries short-lived TURN credentials (infra/turn/).
    ...(turnCredentialsFromConfig(config) ? { turn: turnCredentialsFromConfig(config)! } : {}),
    ...(cascade ? { cascade } : {}),
    numWorkers: config.SFU_NUM_WORKERS,
    listenIp: config.SFU_LISTEN_IP,
    ...(config.SFU_ANNOUNCED_IP ? { announcedAddress: config.SFU_ANNOUNCED_IP } : {}),
    webRtcBasePort: config.SFU_RTC_PORT,
    rtcMinPort: config.SFU_RTC_MIN_PORT,
    rtcMaxPort: config.SFU_RTC_MAX_PORT,
    logger,
  };
}
