'use strict';
// libsandbox for Node.js: run untrusted code in throwaway microVMs.
//
// The native addon (src/*.c, N-API) runs every call that waits on the VM
// off the main thread and returns a Promise. This layer gives it the shape
// of the Node ecosystem: a Sandbox class, child_process-like streams,
// SandboxError, Symbol.asyncDispose.
const path = require('node:path');
const { Readable, Writable } = require('node:stream');

// RTLD_DEEPBIND: the node executable exports its bundled c-ares, OpenSSL,
// zlib... and without it libsandbox's references to those libraries bind
// to Node's copies (other versions, other ABIs: DNS through the proxy then
// times out). With it, libsandbox and its dependencies resolve against
// the system libraries they were linked with first; N-API symbols, which
// only the executable defines, are still found there.
function loadAddon() {
  const explicit = process.env.SANDBOX_NODE_ADDON;
  const file = explicit ? path.resolve(explicit)
    : path.join(__dirname, '..', 'build', 'Release', 'sandbox.node');
  const { RTLD_NOW, RTLD_DEEPBIND } = require('node:os').constants.dlopen;
  if (RTLD_DEEPBIND === undefined) return require(file); // not glibc
  const mod = { exports: {} };
  process.dlopen(mod, file, RTLD_NOW | RTLD_DEEPBIND);
  return mod.exports;
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
const NET_BLOCK_MISDIRECTED = 0x1;
const FILE_PARENTS = 0x1;
const FILE_RECURSIVE = 0x2;
const FILE_NOFOLLOW = 0x4;
const FILE_TYPES = { 1: 'file', 2: 'directory', 3: 'symlink', 4: 'other' };

// The shapes of the public options -> the addon's arrays. Value checks are
// the library's (same message from every front end); only types are ours.
function nativeOptions(o) {
  if (o === undefined || o === null) o = {};
  if (!isPlainObject(o)) throw new TypeError('options must be an object');
  const known = new Set(['secrets', 'allowNet', 'volumes', 'metadata', 'env', 'memoryMb',
    'vcpus', 'timeout', 'workdir', 'image', 'stateDir', 'libvirtUri', 'accel', 'auditLog',
    'onAudit', 'bootTimeout', 'dnsServers', 'tlsCaFile', 'tlsPassthrough',
    'blockMisdirectedSecrets']);
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw new TypeError(`unknown option '${k}'`);
  }
  const n = {
    image: o.image, memoryMb: o.memoryMb, vcpus: o.vcpus, workdir: o.workdir,
    timeout: o.timeout, libvirtUri: o.libvirtUri, stateDir: o.stateDir,
    auditLog: o.auditLog, bootTimeout: o.bootTimeout, env: envList(o.env, 'env'),
    dnsServers: o.dnsServers, tlsCaFile: o.tlsCaFile, tlsPassthrough: o.tlsPassthrough,
  };
  if (o.blockMisdirectedSecrets !== undefined) {
    if (typeof o.blockMisdirectedSecrets !== 'boolean') {
      throw new TypeError('blockMisdirectedSecrets must be a boolean');
    }
    n.netFlags = o.blockMisdirectedSecrets ? NET_BLOCK_MISDIRECTED : 0;
  }
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

function fileInfo(i) {
  return { ...i, type: FILE_TYPES[i.type] || 'other' };
}

function pathArg(p, what) {
  if (typeof p === 'string') return p;
  if (p instanceof URL) return require('node:url').fileURLToPath(p);
  throw new TypeError(`${what} must be a string`);
}

function fileOptions(o, known) {
  if (o === undefined || o === null) return {};
  if (!isPlainObject(o)) throw new TypeError('options must be an object');
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new TypeError(`unknown option '${k}'`);
  }
  return o;
}

function modeOf(o) {
  if (o.mode === undefined) return 0;
  if (!Number.isInteger(o.mode) || o.mode < 0) throw new TypeError('mode must be an integer');
  return o.mode;
}

/** Files in one sandbox (`sb.files`). Guest paths are used as given
 * (absolute, or relative to "/"). Every call runs off the main thread and
 * returns a Promise; errors are SandboxErrors with the library's code. */
class Files {
  constructor(sandbox) {
    this._sb = sandbox;
  }

  /** Create or truncate a file with data (string: UTF-8). Options: mode
   * (permission bits, default 0o644), parents (create missing parent
   * directories). */
  async write(path, data, options) {
    const o = fileOptions(options, ['mode', 'parents']);
    let buf;
    if (typeof data === 'string') buf = Buffer.from(data);
    else if (Buffer.isBuffer(data)) buf = data;
    else if (data instanceof Uint8Array) {
      buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }
    else throw new TypeError('data must be a string, Buffer or Uint8Array');
    await call(native.fileWrite(this._sb._handle, pathArg(path, 'path'), buf, modeOf(o),
      o.parents ? FILE_PARENTS : 0));
  }

  /** The whole file as a Buffer (or a string with { encoding }). A file
   * larger than maxSize bytes (default 64 MiB) fails with SANDBOX_E_TOOBIG. */
  async read(path, options) {
    const o = fileOptions(options, ['encoding', 'maxSize']);
    if (o.maxSize !== undefined && !(Number.isSafeInteger(o.maxSize) && o.maxSize > 0)) {
      throw new TypeError('maxSize must be a positive integer');
    }
    const b = await call(native.fileRead(this._sb._handle, pathArg(path, 'path'),
      o.maxSize || 0));
    return o.encoding ? b.toString(o.encoding) : b;
  }

  /** { name, type: 'file'|'directory'|'symlink'|'other', mode, size, mtime,
   * uid, gid, linkTarget }. followSymlinks: false describes a symlink
   * itself. */
  async stat(path, options) {
    const o = fileOptions(options, ['followSymlinks']);
    return fileInfo(await call(native.fileStat(this._sb._handle, pathArg(path, 'path'),
      o.followSymlinks === false ? FILE_NOFOLLOW : 0)));
  }

  /** The entries of a directory, sorted by name. */
  async list(path) {
    const l = await call(native.fileList(this._sb._handle, pathArg(path, 'path')));
    return l.map(fileInfo).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Whether the path exists (a dangling symlink counts). */
  async exists(path) {
    try {
      await this.stat(path, { followSymlinks: false });
      return true;
    } catch (e) {
      if (e instanceof SandboxError && e.code === 'SANDBOX_E_NOTFOUND') return false;
      throw e;
    }
  }

  /** Make a directory. Options: mode (default 0o755), parents (like
   * mkdir -p). */
  async mkdir(path, options) {
    const o = fileOptions(options, ['mode', 'parents']);
    await call(native.fileMkdir(this._sb._handle, pathArg(path, 'path'), modeOf(o),
      o.parents ? FILE_PARENTS : 0));
  }

  /** Remove a file, symlink or empty directory; { recursive: true }: a
   * whole tree (symlinks not followed). */
  async remove(path, options) {
    const o = fileOptions(options, ['recursive']);
    await call(native.fileRemove(this._sb._handle, pathArg(path, 'path'),
      o.recursive ? FILE_RECURSIVE : 0));
  }

  /** Copy a host file or directory tree into the guest. { parents }. */
  async upload(hostPath, guestPath, options) {
    const o = fileOptions(options, ['parents']);
    await call(native.fileUpload(this._sb._handle, pathArg(hostPath, 'hostPath'),
      pathArg(guestPath, 'guestPath'), o.parents ? FILE_PARENTS : 0));
  }

  /** Copy a guest file or tree out to hostPath, which must not exist yet. */
  async download(guestPath, hostPath) {
    await call(native.fileDownload(this._sb._handle, pathArg(guestPath, 'guestPath'),
      pathArg(hostPath, 'hostPath')));
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
    /** The files API: write, read, stat, list, mkdir, remove, upload,
     * download. */
    this.files = new Files(this);
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

  /** Replace the running sandbox's outbound allowlist: undefined/null
   * allows everything, [] nothing. New connections and DNS queries follow
   * it at once. A malformed pattern rejects (SANDBOX_E_INVAL) and the old
   * list stays. */
  async setAllowNet(allowNet) {
    if (allowNet !== undefined && allowNet !== null && !Array.isArray(allowNet)) {
      throw new TypeError('allowNet must be an array of strings, or undefined');
    }
    await call(native.setAllowNet(this._handle, allowNet));
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

module.exports = { Sandbox, Process, CommandResult, SandboxError, Files, version };
