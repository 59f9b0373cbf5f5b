'use strict';
// The Node binding against real sandboxes (node --test; run through
// tests/node.sh, which builds the addon and sets the environment).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const { Sandbox, SandboxError, CommandResult, version } = require('..');

const TOP = process.env.SANDBOX_SOURCE_DIR;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CURL = 'curl -sS --max-time 20';
const SECRET = 's3cret-node-binding';

function qemuRunning(id) {
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return ps.split('\n').some((l) => l.includes('qemu') && l.includes(id));
}

test('environment is set up by tests/node.sh', () => {
  assert.ok(TOP, 'SANDBOX_SOURCE_DIR not set (run through tests/node.sh)');
  assert.ok(process.env.SANDBOX_ERROR_REFERENCE, 'SANDBOX_ERROR_REFERENCE not set');
  assert.equal(version(), '0.1.0');
});

test('shared sandbox', async (t) => {
  // allowNet: []: no outbound traffic at all (checked below)
  const sb = await Sandbox.create({ metadata: { owner: 'node-test' }, allowNet: [] });
  t.after(() => sb.kill());

  await t.test('run: buffered output and exit code', async () => {
    const r = await sb.run(['python3', '-c',
      "import sys; print(6 * 7); print('oops', file=sys.stderr); sys.exit(3)"]);
    assert.ok(r instanceof CommandResult);
    assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.signal, r.timedOut],
      ['42\n', 'oops\n', 3, 0, false]);
    assert.equal(r.ok, false);
  });

  await t.test('run: shell string, env, cwd, stdin', async () => {
    const r = await sb.run('cd .. && pwd; echo "$GREETING"; tr a-z A-Z',
      { env: { GREETING: 'hi' }, cwd: '/tmp', stdin: 'shout\n' });
    assert.equal(r.stdout, '/\nhi\nSHOUT\n');
  });

  await t.test('run: binary output kept exactly', async () => {
    const r = await sb.run(['python3', '-c',
      'import sys; sys.stdout.buffer.write(bytes(range(256)))']);
    assert.deepEqual([...r.stdoutBuffer], [...Array(256).keys()]);
  });

  await t.test('the event loop keeps running while a command runs', async () => {
    let ticks = 0;
    const iv = setInterval(() => { ticks += 1; }, 20);
    await sb.run(['sleep', '1']);
    clearInterval(iv);
    assert.ok(ticks >= 25, `only ${ticks} timer ticks in 1 s`);
  });

  await t.test('timeout and signals', async () => {
    const r = await sb.run(['sleep', '30'], { timeout: 0.5 });
    assert.equal(r.timedOut, true);
    const k = await sb.run(['sh', '-c', 'kill -TERM $$']);
    assert.deepEqual([k.exitCode, k.signal], [-1, 15]);
  });

  await t.test('missing command: SandboxError from the library', async () => {
    await assert.rejects(sb.run(['no-such-command-here']), (e) => {
      assert.ok(e instanceof SandboxError);
      assert.equal(e.code, 'SANDBOX_E_NOTFOUND');
      assert.equal(e.errno, -12);
      assert.match(e.message, /no-such-command-here/);
      return true;
    });
  });

  await t.test('spawn: stdout/stderr streams deliver before the end', async () => {
    const p = await sb.spawn(['sh', '-c', 'echo first; sleep 1.5; echo second >&2']);
    assert.ok(p.pid > 0);
    const t0 = Date.now();
    const seen = [];
    p.stdout.on('data', (d) => seen.push(['out', d.toString(), Date.now() - t0]));
    p.stderr.on('data', (d) => seen.push(['err', d.toString(), Date.now() - t0]));
    const r = await p.wait();
    assert.equal(r.exitCode, 0);
    assert.deepEqual(seen.map((s) => s.slice(0, 2)), [['out', 'first\n'], ['err', 'second\n']]);
    assert.ok(seen[1][2] - seen[0][2] > 1000, 'first chunk arrived before the end');
  });

  await t.test('spawn: async iteration in order', async () => {
    const p = await sb.spawn('for i in 1 2 3; do echo $i; done; sleep 0.3; echo e >&2');
    // chunk boundaries are the guest's; label each change of stream
    let got = '';
    let last = null;
    for await (const c of p) {
      assert.ok(Buffer.isBuffer(c.data));
      if (c.stream !== last) got += `${c.stream}:`;
      got += c.data;
      last = c.stream;
    }
    assert.equal(got, 'stdout:1\n2\n3\nstderr:e\n');
    assert.equal((await p.wait()).exitCode, 0);
  });

  await t.test('spawn: stdin is a Writable', async () => {
    const p = await sb.spawn(['cat'], { stdin: true });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stdin.write('ping\n');
    p.stdin.end('pong\n');
    assert.equal((await p.wait()).exitCode, 0);
    assert.equal(out, 'ping\npong\n');
  });

  await t.test('spawn: a lot of output with a slow reader (flow control)', async () => {
    const p = await sb.spawn(['python3', '-c',
      "import sys; sys.stdout.buffer.write(b'x' * (8 << 20))"]);
    let n = 0;
    p.stdout.on('data', (d) => { n += d.length; p.stdout.pause(); setTimeout(() => p.stdout.resume(), 1); });
    const r = await p.wait();
    assert.equal(r.exitCode, 0);
    assert.equal(n, 8 << 20);
  });

  await t.test('spawn: kill a process', async () => {
    const p = await sb.spawn(['sleep', '60']);
    await p.kill(9);
    const r = await p.wait();
    assert.equal(r.signal, 9);
  });

  await t.test('metadata, id, ping, list', async () => {
    assert.deepEqual(sb.metadata, { owner: 'node-test' });
    assert.match(sb.id, /^[0-9a-f]{32}$/);
    await sb.ping();
    assert.ok(Sandbox.list().some((s) => s.id === sb.id));
  });

  await t.test('allowNet [] blocks everything', async () => {
    const r = await sb.run(`${CURL} http://203.0.113.7/echo`);
    assert.notEqual(r.exitCode, 0);
    assert.doesNotMatch(r.stdout, /"method"/);
  });

  await t.test('files: write, read, stat, list, remove', async () => {
    const f = sb.files;
    await f.mkdir('/tmp/jsfiles/sub', { parents: true });
    const bin = Buffer.from([...Array(256).keys(), ...Array(256).keys()]);
    await f.write('/tmp/jsfiles/a.bin', bin, { mode: 0o600 });
    await f.write('/tmp/jsfiles/sub/b.txt', 'héllo\n');
    assert.deepEqual(await f.read('/tmp/jsfiles/a.bin'), bin);
    assert.equal(await f.read('/tmp/jsfiles/sub/b.txt', { encoding: 'utf8' }), 'héllo\n');
    const st = await f.stat('/tmp/jsfiles/a.bin');
    assert.deepEqual([st.type, st.size, st.mode], ['file', 512, 0o600]);
    assert.deepEqual((await f.list('/tmp/jsfiles')).map((e) => [e.name, e.type]),
      [['a.bin', 'file'], ['sub', 'directory']]);
    assert.equal((await sb.run('cat /tmp/jsfiles/sub/b.txt')).stdout, 'héllo\n');
    await assert.rejects(f.read('/tmp/jsfiles/a.bin', { maxSize: 100 }),
      (e) => e instanceof SandboxError && e.code === 'SANDBOX_E_TOOBIG');
    await assert.rejects(f.remove('/tmp/jsfiles'),
      (e) => e instanceof SandboxError && e.code === 'SANDBOX_E_NOTEMPTY');
    await f.remove('/tmp/jsfiles/a.bin');
    assert.equal(await f.exists('/tmp/jsfiles/a.bin'), false);
    await f.remove('/tmp/jsfiles', { recursive: true });
    await assert.rejects(f.stat('/tmp/jsfiles'),
      (e) => e instanceof SandboxError && e.code === 'SANDBOX_E_NOTFOUND');
    await assert.rejects(f.write('/tmp/x', 42), TypeError);
  });

  await t.test('files: upload and download a tree', async () => {
    const dir = fs.mkdtempSync('/tmp/sbx-node-tree-');
    try {
      const src = path.join(dir, 'src');
      fs.mkdirSync(path.join(src, 'd'), { recursive: true });
      fs.writeFileSync(path.join(src, 'top.txt'), 'top\n');
      const deep = require('node:crypto').randomBytes(100000);
      fs.writeFileSync(path.join(src, 'd', 'deep.bin'), deep);
      fs.symlinkSync('top.txt', path.join(src, 'link'));
      await sb.files.upload(src, '/tmp/jstree/in', { parents: true });
      assert.equal((await sb.run('cat /tmp/jstree/in/top.txt; readlink /tmp/jstree/in/link'))
        .stdout, 'top\ntop.txt\n');
      const l = await sb.files.stat('/tmp/jstree/in/link', { followSymlinks: false });
      assert.deepEqual([l.type, l.linkTarget], ['symlink', 'top.txt']);
      await sb.run('echo made-inside > /tmp/jstree/in/d/inside.txt');
      const out = path.join(dir, 'out');
      // off the main thread: timers keep firing during the transfer
      await sb.files.download('/tmp/jstree/in', out);
      assert.equal(fs.readFileSync(path.join(out, 'top.txt'), 'utf8'), 'top\n');
      assert.deepEqual(fs.readFileSync(path.join(out, 'd', 'deep.bin')), deep);
      assert.equal(fs.readFileSync(path.join(out, 'd', 'inside.txt'), 'utf8'), 'made-inside\n');
      assert.equal(fs.readlinkSync(path.join(out, 'link')), 'top.txt');
      await assert.rejects(sb.files.download('/tmp/jstree/in', out),
        (e) => e instanceof SandboxError && e.code === 'SANDBOX_E_EXISTS');
      await sb.files.remove('/tmp/jstree', { recursive: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('network policy, secrets, read-only volume', async (t) => {
  const status = spawnSync('bash', [path.join(TOP, 'tests/net/testnet.sh'), 'status'],
    { encoding: 'utf8' });
  assert.equal(status.status, 0,
    `the test network is not up (tests/net/testnet.sh up):\n${status.stdout}${status.stderr}`);
  const TESTNET_CA = spawnSync('bash', ['-c', `. '${TOP}/tests/net/env.sh' && echo "$TESTNET_CA"`],
    { encoding: 'utf8' }).stdout.trim();
  assert.ok(fs.existsSync(TESTNET_CA), `no test network CA at '${TESTNET_CA}'`);
  const project = fs.mkdtempSync('/tmp/sbx-node-volume-');
  fs.chmodSync(project, 0o755);
  fs.writeFileSync(path.join(project, 'hello.txt'), 'from the host\n', { mode: 0o644 });
  t.after(() => fs.rmSync(project, { recursive: true, force: true }));
  const sb = await Sandbox.create({
    allowNet: ['example.test', 'api.example.test'],
    dnsServers: ['192.0.2.53'],
    tlsCaFile: TESTNET_CA, // the test servers' CA, for upstream TLS
    secrets: { TOKEN: { value: SECRET, hosts: ['api.example.test'], substituteBody: true } },
    blockMisdirectedSecrets: true,
    volumes: { '/project': { hostPath: project, readonly: true } },
  });
  t.after(() => sb.kill());

  await t.test('an allowed host, through the DNS servers given', async () => {
    const r = await sb.run(`${CURL} http://example.test/echo`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /"path": "\/echo"/);
    assert.notEqual((await sb.run(`${CURL} http://other.test/echo`)).exitCode, 0);
  });

  await t.test('setAllowNet updates the running sandbox', async () => {
    try {
      await sb.setAllowNet([]);
      assert.notEqual((await sb.run(`${CURL} http://example.test/echo`)).exitCode, 0);
      await sb.setAllowNet(['other.test']);
      assert.equal((await sb.run(`${CURL} http://other.test/echo`)).exitCode, 0);
      await assert.rejects(sb.setAllowNet(['bad pattern!']), (e) => e instanceof SandboxError &&
        e.code === 'SANDBOX_E_INVAL' && e.message.includes('bad pattern!'));
      assert.equal((await sb.run(`${CURL} http://other.test/echo`)).exitCode, 0);
      await assert.rejects(sb.setAllowNet('example.test'), TypeError);
    } finally {
      await sb.setAllowNet(['example.test', 'api.example.test']);
    }
    assert.equal((await sb.run(`${CURL} http://example.test/echo`)).exitCode, 0);
  });

  await t.test('secrets: the guest sees a placeholder, the allowed host the value', async () => {
    const r = await sb.run('echo "$TOKEN"');
    assert.match(r.stdout, /^SBX_PH_TOKEN_[a-z2-7]{32}\n$/);
    const body = await sb.run(`${CURL} --data-binary "$TOKEN" http://api.example.test/echo`);
    assert.equal(body.exitCode, 0, body.stderr);
    const sha = require('node:crypto').createHash('sha256').update(SECRET).digest('hex');
    assert.equal(JSON.parse(body.stdout).body_sha256, sha);
    assert.ok(!body.stdout.includes(SECRET));
    const tls = await sb.run(`${CURL} --data-binary "$TOKEN" https://api.example.test/echo`);
    assert.equal(tls.exitCode, 0, tls.stdout + tls.stderr);
    assert.equal(JSON.parse(tls.stdout).body_sha256, sha);
    assert.equal(JSON.parse(tls.stdout).tls, true);
    // blockMisdirectedSecrets: example.test is allowed, but not for TOKEN
    const mis = await sb.run(`${CURL} -o /dev/null -w '%{http_code}' -H "X-Token: $TOKEN" ` +
      'http://example.test/echo');
    assert.equal(mis.stdout, '403'); // refused by the proxy, nothing sent upstream
  });

  await t.test('a read-only volume', async () => {
    assert.equal(await sb.files.read('/project/hello.txt', { encoding: 'utf8' }),
      'from the host\n');
    assert.notEqual((await sb.run('echo x > /project/new.txt')).exitCode, 0);
    await assert.rejects(sb.files.write('/project/new2.txt', 'x'), SandboxError);
  });
});

test('asyncDispose, kill, audit', async () => {
  const dir = fs.mkdtempSync('/tmp/sbx-node-');
  const log = path.join(dir, 'audit.jsonl');
  const events = [];
  let id;
  {
    const sb = await Sandbox.create({ metadata: { owner: 'agent' }, env: { FROM_CREATE: 'yes' },
      memoryMb: 256, timeout: 600, auditLog: log, onAudit: (e) => events.push(e) });
    id = sb.id;
    assert.equal((await sb.run('echo $FROM_CREATE')).stdout, 'yes\n');
    // kill while a command runs: the command fails with SANDBOX_E_DEAD
    const running = assert.rejects(sb.run(['sleep', '60']), { code: 'SANDBOX_E_DEAD' });
    await sleep(500);
    await sb.kill();
    await running;
    assert.equal(sb.isRunning, false);
    await sb[Symbol.asyncDispose](); // idempotent
    await assert.rejects(sb.run('true'), { code: 'SANDBOX_E_DEAD' });
  }
  await sleep(200); // audit events arrive through the event loop
  const kinds = events.map((e) => e.event);
  assert.equal(kinds[0], 'sandbox.create');
  assert.equal(kinds[kinds.length - 1], 'sandbox.kill');
  assert.ok(events.every((e) => e.sandbox === id && e.metadata.owner === 'agent'));
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((e) => e.event), kinds);
  fs.rmSync(dir, { recursive: true });
});

test('Symbol.asyncDispose is the standard symbol', async () => {
  assert.equal(typeof Sandbox.prototype[Symbol.asyncDispose], 'function');
});

test('an unreferenced sandbox is killed by garbage collection', async () => {
  assert.equal(typeof global.gc, 'function', 'run node with --expose-gc');
  let id;
  await (async () => {
    const sb = await Sandbox.create({});
    id = sb.id;
  })();
  assert.ok(qemuRunning(id));
  for (let i = 0; i < 100 && Sandbox.list().some((s) => s.id === id); i++) {
    global.gc();
    await sleep(100);
  }
  for (let i = 0; i < 100 && qemuRunning(id); i++) await sleep(100);
  assert.equal(qemuRunning(id), false);
});

test('same errors as the C library', async () => {
  const ref = new Map(fs.readFileSync(process.env.SANDBOX_ERROR_REFERENCE, 'utf8').trim()
    .split('\n').map((l) => {
      const [name, code, message] = l.split('\t');
      return [name, { errno: Number(code), message }];
    }));
  const cases = JSON.parse(fs.readFileSync(path.join(TOP, 'tests/frontends/error_cases.json')));
  delete cases._comment;
  assert.deepEqual(Object.keys(cases).sort(), [...ref.keys()].sort());
  for (const [name, spec] of Object.entries(cases)) {
    const o = {};
    if (spec.allow_net) o.allowNet = spec.allow_net;
    if (spec.secrets) o.secrets = spec.secrets;
    if (spec.volumes) {
      o.volumes = Object.fromEntries(Object.entries(spec.volumes)
        .map(([g, v]) => [g, { hostPath: v.host_path, readonly: v.readonly }]));
    }
    if (spec.memory_mb) o.memoryMb = spec.memory_mb;
    if (spec.env) o.env = spec.env;
    if (spec.workdir) o.workdir = spec.workdir;
    if (spec.dns_servers) o.dnsServers = spec.dns_servers;
    if (spec.tls_ca_file) o.tlsCaFile = spec.tls_ca_file;
    if (spec.tls_passthrough) o.tlsPassthrough = spec.tls_passthrough;
    await assert.rejects(Sandbox.create(o), (e) => {
      assert.ok(e instanceof SandboxError, name);
      assert.deepEqual({ errno: e.errno, message: e.message }, ref.get(name), name);
      return true;
    });
  }
});

test('type mistakes are TypeErrors before any VM', async () => {
  await assert.rejects(Sandbox.create({ allowNet: 'example.com' }), TypeError);
  await assert.rejects(Sandbox.create({ memoryMb: -1 }), TypeError);
  await assert.rejects(Sandbox.create({ nope: 1 }), TypeError);
  await assert.rejects(Sandbox.create({ metadata: { a: 1 } }), TypeError);
});

test('TypeScript declarations cover the exports', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  for (const name of Object.keys(require('..'))) {
    assert.match(dts, new RegExp(`export (declare )?(class|function) ${name}\\b`), name);
  }
});

test('README example runs as written', () => {
  const app = fs.mkdtempSync('/tmp/sbx-node-app-');
  fs.mkdirSync(path.join(app, 'node_modules'));
  fs.symlinkSync(path.join(__dirname, '..'), path.join(app, 'node_modules', 'libsandbox'));
  fs.copyFileSync(path.join(TOP, 'examples/node/quickstart.mjs'), path.join(app, 'quickstart.mjs'));
  // its own state dir: this process holds ours
  const env = { ...process.env, SANDBOX_STATE_DIR: `${process.env.SANDBOX_STATE_DIR}-example` };
  const r = spawnSync(process.execPath, ['quickstart.mjs'], { cwd: app, env, encoding: 'utf8',
    timeout: 300000 });
  fs.rmSync(app, { recursive: true });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /sum of squares 1\.\.100 = 338350/);
  assert.match(r.stdout, /exit code 0/);
  assert.match(r.stdout, /tick 3/);
  assert.match(r.stdout, /files: \[ 'main\.py' \]/);
});

test('sandboxes still running when Node exits are killed', () => {
  const script = `const { Sandbox } = require(${JSON.stringify(path.join(__dirname, '..'))});
    Sandbox.create({}).then((sb) => { globalThis.keep = sb; console.log(sb.id); process.exit(0); });`;
  const env = { ...process.env, SANDBOX_STATE_DIR: `${process.env.SANDBOX_STATE_DIR}-exit` };
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 300000 });
  assert.equal(r.status, 0, r.stderr);
  const id = r.stdout.trim();
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.equal(qemuRunning(id), false);
});
