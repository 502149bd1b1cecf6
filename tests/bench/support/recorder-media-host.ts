// The recorder benchmark's "rest of the world" in its own process, so that the benchmark process's
// CPU is the recorder's alone: the embedded S3 server, the RTSP server and the camera publisher
// (one pre-encoded clip, stream-copied in a loop). Prints one JSON line with the addresses, then
// runs until its stdin closes.
import { spawn } from 'node:child_process';
import { startEmbeddedS3 } from '../../../infra/storage/embedded-s3.ts';
import { RtspServer } from '../../support/rtsp-server.ts';

const [s3Dir, clip] = process.argv.slice(2);
if (!s3Dir || !clip) throw new Error('usage: recorder-media-host.ts <s3 dir> <clip.mp4>');
const s3 = await startEmbeddedS3(s3Dir, 0);
const rtsp = await RtspServer.start();
const publisher = spawn('ffmpeg', ['-v', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', 'tcp', rtsp.url('bench')], { stdio: 'ignore' });
await rtsp.waitForPublish('bench');
process.stdout.write(`${JSON.stringify({ s3: { endpoint: s3.endpoint, port: s3.port, accessKey: s3.accessKey, secretKey: s3.secretKey }, rtspUrl: rtsp.url('bench') })}\n`);
const stop = async (): Promise<void> => {
  publisher.kill('SIGKILL');
  await rtsp.close();
  await s3.close();
  process.exit(0);
};
process.stdin.on('end', () => void stop());
process.stdin.on('close', () => void stop());
process.stdin.resume();
