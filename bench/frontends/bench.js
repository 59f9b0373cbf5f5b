'use strict';
// The Node side of bench/frontends/run.py: the same measurements as
// bench_frontends.c, through the N-API addon (promises, worker threads).
const { Sandbox } = require(process.env.SANDBOX_NODE_PACKAGE);

(async () => {
  const [creates, execs] = process.argv.slice(2).map(Number);
  await (await Sandbox.create()).kill(); // warm-up
  const createMs = [];
  let sb;
  for (let i = 0; i < creates; i++) {
    const t = process.hrtime.bigint();
    sb = await Sandbox.create();
    createMs.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (i + 1 < creates) await sb.kill();
  }
  const execMs = [];
  for (let i = 0; i < execs; i++) {
    const t = process.hrtime.bigint();
    const r = await sb.run(['true']);
    execMs.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.exitCode !== 0) throw new Error('true failed');
  }
  await sb.kill();
  console.log(JSON.stringify({ create_ms: createMs, exec_ms: execMs }));
})().catch((e) => { console.error(e); process.exit(1); });
