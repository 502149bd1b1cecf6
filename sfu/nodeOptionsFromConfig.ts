import type { Config } from '../infra/config.ts';
import type { Logger } from '../infra/logger.ts';
import type { SfuNodeOptions } from './SfuNode.ts';

/** A node's media settings from the validated configuration (standalone node or `npm start`). */
export function nodeOptionsFromConfig(
  config: Config,
  tokenSecret: string,
  logger: Logger,
  cascade?: SfuNodeOptions['cascade'],
): SfuNodeOptions {
  return {
    tokenSecret,
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
