import { Sandbox, SandboxError } from 'libsandbox';

const code = `
import platform
print(f"hello from Python {platform.python_version()} in {platform.node()}")
print("sum of squares 1..100 =", sum(i * i for i in range(1, 101)))
`;

try {
  // allowNet: []: no network at all; untrusted code gets only what we give it
  const sb = await Sandbox.create({ metadata: { owner: 'quickstart' }, memoryMb: 512,
    allowNet: [] });
  try {
    console.log(`sandbox ${sb.id} is up`);
    await sb.files.write('/work/main.py', code, { parents: true });
    const result = await sb.run(['python3', '/work/main.py'], { cwd: '/work' });
    process.stdout.write(result.stdout);
    console.log('exit code', result.exitCode);
    const proc = await sb.spawn('for i in 1 2 3; do echo tick $i; sleep 0.2; done');
    proc.stdout.pipe(process.stdout);
    await proc.wait();
    console.log('files:', (await sb.files.list('/work')).map((f) => f.name));
  } finally {
    await sb.kill(); // or: await using sb = await Sandbox.create(...)
  }
} catch (e) {
  if (!(e instanceof SandboxError)) throw e;
  console.error(`${e.code}: ${e.message}`);
  process.exitCode = 1;
}
