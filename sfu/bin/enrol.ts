// The node-side enrolment command. On the new node's host:
//   node --import tsx sfu/bin/enrol.ts enrol    --api https://city.example:8443 --data-dir /var/lib/grassroots-av --code XXXXX-...
//   node --import tsx sfu/bin/enrol.ts rotate   --api ... --data-dir ...   (registers a new key and dials with it)
//   node --import tsx sfu/bin/enrol.ts activate --api ... --data-dir ...   (retires the old key)
// `enrol` makes the node's key pair here (the private key never leaves this host) and prints the
// settings the node then starts with (SFU_NODE_AUTH=key, SFU_NODE_ID, SFU_UNIT_ID, SFU_PARENT_URL).
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { EnrolmentClient } from '../cascade/EnrolmentClient.ts';
import { EnrolmentError } from '../cascade/EnrolmentError.ts';

const argsSchema = z.object({
  command: z.enum(['enrol', 'rotate', 'activate']),
  api: z.string().regex(/^https?:\/\/\S+$/, '--api: the API base URL (http(s)://host:port)'),
  dataDir: z.string().min(1),
  code: z.string().optional(),
});

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { api: { type: 'string' }, 'data-dir': { type: 'string' }, code: { type: 'string' } },
  });
  const parsed = argsSchema.safeParse({
    command: positionals[0],
    api: values.api ?? process.env.ENROL_API_URL,
    dataDir: values['data-dir'] ?? process.env.DATA_DIR,
    code: values.code ?? process.env.ENROL_CODE,
  });
  if (!parsed.success) {
    process.stderr.write(`用法 / usage: enrol.ts enrol|rotate|activate --api URL --data-dir DIR [--code CODE]\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}\n`);
    return 2;
  }
  const { command, api, dataDir, code } = parsed.data;
  const client = new EnrolmentClient(api, dataDir);
  try {
    if (command === 'enrol') {
      if (!code) throw new EnrolmentError(0, 'no_code', '缺少注册码 / --code is required');
      const r = await client.enrol(code);
      process.stdout.write(
        `# 已注册 / enrolled: ${r.name} (${r.node_id}), key ${r.key_fingerprint}\n` +
          `SFU_NODE_AUTH=key\nSFU_NODE_ID=${r.node_id}\nSFU_UNIT_ID=${r.unit_id}\n` +
          (r.parent ? `SFU_PARENT_URL=${r.parent.cascade_url}\n` : '# no parent node: this node is a root\n'),
      );
    } else if (command === 'rotate') {
      await client.rotate();
      process.stdout.write('# 新密钥已登记(待激活)，节点下次连接即使用 / new key registered (pending); the node dials with it from now on\n');
    } else {
      await client.activate();
      process.stdout.write('# 新密钥已激活，旧密钥作废 / new key active; the old key no longer works\n');
    }
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof EnrolmentError ? `${err.status} ${err.code}: ` : ''}${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await main();
