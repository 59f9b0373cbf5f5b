'use strict';
// The Node side of bench/frontends/run.py: the same line protocol as
// bench_frontends.c, through the N-API addon (Promises, worker threads).
const readline = require('node:readline');
const { Sandbox } = require(process.env.SANDBOX_NODE_PACKAGE);

(async () => {
  let sb = null;
  for await (const line of readline.createInterface({ input: process.stdin })) {
    let t;
    if (line === 'create') {
      if (sb) await sb.kill();
      t = process.hrtime.bigint();
      sb = await Sandbox.create();
    } else if (line === 'exec') {
      t = process.hrtime.bigint();
      if ((await sb.run(['true'])).exitCode !== 0) throw new Error('true failed');
    } else if (line === 'ping') {
      t = process.hrtime.bigint();
      await sb.ping();
    } else if (line === 'reject') {
      t = process.hrtime.bigint();
      try {
        await Sandbox.create({ memoryMb: 1 });
        throw new Error('create with memoryMb 1 succeeded');
      } catch (e) {
        if (e.code !== 'SANDBOX_E_INVAL') throw e;
      }
    } else {
      break;
    }
    process.stdout.write(`${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(3)}\n`);
  }
  if (sb) await sb.kill();
})().catch((e) => { console.error(e); process.exit(1); });
