'use strict';
// libsandbox for Node.js: run untrusted code in throwaway microVMs.
//
// The native addon (src/*.c, N-API) runs every call that waits on the VM
// off the main thread and returns a Promise. This layer gives it the shape
// of the Node ecosystem: a Sandbox class, child_process-like streams,
// SandboxError, Symbol.asyncDispose.
const path = require('node:path');
const { Readable, Writable } = require('node:stream');

function loadAddon() {
  const explicit = process.env.SANDBOX_NODE_ADDON;
  if (explicit) return require(path.resolve(explicit));
  return require(path.join(__dirname, '..', 'build', 'Release', 'sandbox.node'));
}
const native = loadAddon();

/** A libsandbox call failed. `code` is 'SANDBOX_E_...', `errno` the library's
 * negative code, `message` the library's own text. */
class SandboxError extends Error {
  constructor(code, errno, message) {
    super(message);
    this.name = 'SandboxError';
    this.code = code;
    this.errno = errno;
  }
}

function wrapError(e) {
  if (e && typeof e.errno === 'number' && typeof e.code === 'string' &&
      e.code.startsWith('SANDBOX_E_')) {
    return new SandboxError(e.code, e.errno, e.message);
  }
  return e;
}

async function call(promise) {
  try {
    return await promise;
  } catch (e) {
    throw wrapError(e);
  }
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function envList(env, what) {
  if (env === undefined || env === null) return undefined;
  if (Array.isArray(env)) return env;
  if (!isPlainObject(env)) throw new TypeError(`${what} must be an object of strings`);
  return Object.entries(env).map(([k, v]) => `${k}=${v}`);
}

const ACCEL = { auto: 0, kvm: 1, tcg: 2 };

// The shapes of the public options -> the addon's arrays. Value checks are
// the library's (same message from every front end); only types are ours.
function nativeOptions(o) {
  if (o === undefined || o === null) o = {};
  if (!isPlainObject(o)) throw new TypeError('options must be an object');
  const known = new Set(['secrets', 'allowNet', 'volumes', 'metadata', 'env', 'memoryMb',
    'vcpus', 'timeout', 'workdir', 'image', 'stateDir', 'libvirtUri', 'accel', 'auditLog',
    'onAudit', 'bootTimeout']);
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw new TypeError(`unknown option '${k}'`);
  }
  const n = {
    image: o.image, memoryMb: o.memoryMb, vcpus: o.vcpus, workdir: o.workdir,
    timeout: o.timeout, libvirtUri: o.libvirtUri, stateDir: o.stateDir,
    auditLog: o.auditLog, bootTimeout: o.bootTimeout, env: envList(o.env, 'env'),
  };
  if (o.accel !== undefined) {
    if (!(o.accel in ACCEL)) throw new TypeError(`accel must be one of ${Object.keys(ACCEL)}`);
    n.accel = ACCEL[o.accel];
  }
  if (o.metadata !== undefined) {
    if (!isPlainObject(o.metadata)) throw new TypeError('metadata must be an object of strings');
    n.metadata = Object.entries(o.metadata);
  }
  if (o.secrets !== undefined) {
    if (!isPlainObject(o.secrets)) {
      throw new TypeError('secrets must be an object { NAME: { value, hosts } }');
    }
    n.secrets = Object.entries(o.secrets).map(([name, s]) => {
      if (!isPlainObject(s)) throw new TypeError(`secrets.${name} must be { value, hosts }`);
      return { name, value: s.value, hosts: s.hosts, substituteBody: !!s.substituteBody };
    });
  }
  // undefined: not restricted (NULL); []: nothing allowed
  if (o.allowNet !== undefined) {
    if (!Array.isArray(o.allowNet)) throw new TypeError('allowNet must be an array of strings');
    n.allowNet = o.allowNet;
  }
  if (o.volumes !== undefined) {
    if (!isPlainObject(o.volumes)) {
      throw new TypeError("volumes must be an object { '/guest/path': '/host/dir' | " +
        '{ hostPath, readonly } }');
    }
    n.volumes = Object.entries(o.volumes).map(([guestPath, v]) =>
      typeof v === 'string' ? { hostPath: v, guestPath, readonly: false }
        : { hostPath: v && v.hostPath, guestPath, readonly: !!(v && v.readonly) });
  }
  return n;
}

function argvOf(cmd) {
  if (typeof cmd === 'string') return ['/bin/sh', '-c', cmd];
  if (Array.isArray(cmd) && cmd.length > 0) return cmd;
  throw new TypeError('command must be a string (run by /bin/sh -c) or a non-empty array');
}

function execOptions(o) {
  if (o === undefined || o === null) o = {};
  if (!isPlainObject(o)) throw new TypeError('options must be an object');
  const n = { env: envList(o.env, 'env'), cwd: o.cwd, maxCapture: o.maxCapture };
  if (o.timeout !== undefined) {
    if (typeof o.timeout !== 'number' || o.timeout < 0) {
      throw new TypeError('timeout must be a number of seconds');
    }
    n.timeoutMs = Math.round(o.timeout * 1000);
  }
  if (o.stdin !== undefined) {
    n.stdin = typeof o.stdin === 'string' ? Buffer.from(o.stdin) : o.stdin;
  }
  return n;
}

/** How a command ended. stdout/stderr are strings (UTF-8); the exact bytes
 * are in stdoutBuffer/stderrBuffer. */
class CommandResult {
  constructor(r) {
    this.exitCode = r.exitCode;
    this.signal = r.signal;
    this.timedOut = r.timedOut;
    this.durationMs = r.durationMs;
    this.stdoutBuffer = r.stdout;
    this.stderrBuffer = r.stderr;
    this.stdoutTotal = r.stdoutTotal;
    this.stderrTotal = r.stderrTotal;
    this.stdout = r.stdout.toString('utf8');
    this.stderr = r.stderr.toString('utf8');
  }

  get ok() {
    return this.exitCode === 0 && this.signal === 0;
  }
}

const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose');

// Events buffered before the output is consumed, before pausing the pump.
const BACKLOG = 16;

/** A running command, like a ChildProcess: `stdout` and `stderr` are
 * Readable streams, `stdin` a Writable (when started with { stdin: true }),
 * `wait()` resolves to its CommandResult. Or iterate it (`for await`) for
 * { stream, data } in the order the guest wrote them. Use either the
 * streams or the iteration, not both. */
class Process {
  constructor() {
    this._handle = null;
    this._mode = null; // null (buffering) | 'streams' | 'iter' | 'drain'
    this._backlog = [];
    this._paused = false;
    this._wake = null;
    this._streams = null;
    this._ended = new Promise((resolve, reject) => {
      this._resolveEnded = resolve;
      this._rejectEnded = reject;
    });
    this._ended.catch(() => {});
    this.stdin = null;
  }

  _pause(on) {
    if (this._paused === on || !this._handle) return;
    this._paused = on;
    if (on) native.procPause(this._handle);
    else native.procResume(this._handle);
  }

  _onEvent(kind, stream, data) {
    const ev = kind === 'data' ? { stream: stream === 2 ? 'stderr' : 'stdout', data }
      : { end: true, error: kind === 'error' ? wrapError(stream) : null };
    if (ev.end) {
      if (ev.error) this._rejectEnded(ev.error);
      else this._resolveEnded();
    }
    if (this._mode === 'streams') this._toStreams(ev);
    else if (this._mode === 'drain') this._pause(false);
    else {
      this._backlog.push(ev);
      if (this._backlog.length > BACKLOG) this._pause(true);
      if (this._wake) this._wake();
    }
  }

  _toStreams(ev) {
    const { stdout, stderr } = this._streams;
    if (ev.end) {
      if (ev.error) {
        stdout.destroy(ev.error);
        stderr.destroy(ev.error);
      } else {
        stdout.push(null);
        stderr.push(null);
      }
      return;
    }
    if (!(ev.stream === 'stderr' ? stderr : stdout).push(ev.data)) this._pause(true);
  }

  _ensureStreams() {
    if (this._streams) return this._streams;
    if (this._mode) throw new Error(`output already consumed (${this._mode})`);
    const read = () => this._pause(false);
    this._streams = { stdout: new Readable({ read }), stderr: new Readable({ read }) };
    this._mode = 'streams';
    for (const ev of this._backlog.splice(0)) this._toStreams(ev);
    return this._streams;
  }

  /** Readable stream of the command's standard output. */
  get stdout() {
    return this._ensureStreams().stdout;
  }

  /** Readable stream of the command's standard error. */
  get stderr() {
    return this._ensureStreams().stderr;
  }

  _attach(handle, withStdin) {
    this._handle = handle;
    if (this._backlog.length > BACKLOG) this._pause(true);
    if (withStdin) {
      this.stdin = new Writable({
        write: (chunk, _enc, cb) => {
          call(native.procWrite(handle, Buffer.from(chunk))).then(() => cb(), cb);
        },
        final: (cb) => {
          call(native.procCloseStdin(handle)).then(() => cb(), cb);
        },
      });
    }
  }

  /** The command's pid in the guest. */
  get pid() {
    return native.procPid(this._handle);
  }

  /** Send a signal (a number 1..64, default 9) to the command's process
   * group. */
  async kill(signo = 9) {
    await call(native.procSignal(this._handle, signo));
  }

  /** Resolves to the CommandResult once the command has ended. Output not
   * consumed by then is discarded. */
  async wait() {
    if (this._mode === null) {
      this._mode = 'drain';
      this._backlog = [];
    } else if (this._mode === 'streams') {
      for (const s of [this._streams.stdout, this._streams.stderr]) {
        if (s.readableFlowing === null) s.resume();
      }
    } else if (this._mode === 'iter') {
      this._mode = 'drain';
      this._backlog = [];
    }
    this._pause(false);
    await this._ended;
    return new CommandResult(await call(native.procWait(this._handle, -1)));
  }

  /** Async iteration over { stream: 'stdout' | 'stderr', data: Buffer }. */
  async *[Symbol.asyncIterator]() {
    if (this._mode) throw new Error(`output already consumed (${this._mode})`);
    this._mode = 'iter';
    for (;;) {
      while (this._backlog.length) {
        const ev = this._backlog.shift();
        if (this._backlog.length < BACKLOG / 2) this._pause(false);
        if (ev.end) {
          if (ev.error) throw ev.error;
          return;
        }
        yield ev;
      }
      await new Promise((r) => { this._wake = r; });
      this._wake = null;
    }
  }
}

/** A microVM. `await Sandbox.create(options)`; `await sb.kill()` (or
 * `await using sb = ...`, Symbol.asyncDispose). A sandbox nobody
 * references any more is killed when it is garbage-collected, and every
 * sandbox of the process when Node exits. */
class Sandbox {
  constructor(handle, owner) {
    this._handle = handle;
    this._owner = owner;
  }

  /** Boot a sandbox and wait until it is ready. */
  static async create(options) {
    const o = nativeOptions(options);
    let onAudit;
    if (options && options.onAudit !== undefined) {
      if (typeof options.onAudit !== 'function') throw new TypeError('onAudit must be a function');
      onAudit = (json) => options.onAudit(JSON.parse(json));
    }
    return new Sandbox(await call(native.create(o, onAudit)), true);
  }

  /** This process's running sandboxes (new handles; dropping them does not
   * kill the sandboxes). */
  static list() {
    try {
      return native.list().map((h) => new Sandbox(h, false));
    } catch (e) {
      throw wrapError(e);
    }
  }

  get id() {
    return native.id(this._handle);
  }

  get isRunning() {
    return native.isRunning(this._handle);
  }

  get metadata() {
    return native.metadata(this._handle);
  }

  /** Round trip to the guest agent. */
  async ping() {
    await call(native.ping(this._handle));
  }

  /** Run a command and wait for it: a string runs through /bin/sh -c, an
   * array is the argv. Options: env, cwd, timeout (seconds), stdin
   * (string | Buffer), maxCapture. Resolves whatever the exit status. */
  async run(cmd, options) {
    const r = await call(native.exec(this._handle, argvOf(cmd), execOptions(options)));
    return new CommandResult(r);
  }

  /** Start a command and return at once with a Process whose output
   * streams as it comes. Options: env, cwd, timeout, stdin (true: keep
   * stdin open for process.stdin). */
  async spawn(cmd, options) {
    const o = options || {};
    const wantStdin = o.stdin === true;
    const eo = execOptions({ ...o, stdin: undefined });
    const proc = new Process();
    const handle = await call(native.procStart(this._handle, argvOf(cmd), eo, wantStdin,
      (kind, stream, data) => proc._onEvent(kind, stream, data)));
    proc._attach(handle, wantStdin);
    return proc;
  }

  /** Destroy the VM and delete its disk. Idempotent. */
  async kill() {
    await call(native.kill(this._handle));
  }

  async [asyncDispose]() {
    if (this._owner) await this.kill();
  }
}

/** The loaded library's version, e.g. "0.1.0". */
function version() {
  return native.version();
}

module.exports = { Sandbox, Process, CommandResult, SandboxError, version };
