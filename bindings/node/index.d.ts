// Type declarations for libsandbox's Node.js bindings (lib/index.js).
/// <reference types="node" />
import { Readable, Writable } from 'node:stream';

export interface SecretSpec {
  /** The real value; stays in host memory, the guest sees a placeholder. */
  value: string;
  /** allow_net-style host patterns the value may be sent to. */
  hosts: string[];
  /** Also substitute in request bodies (not only headers). */
  substituteBody?: boolean;
}

export interface VolumeSpec {
  hostPath: string;
  readonly?: boolean;
}

export type AuditEvent = {
  event: string;
  ts: string;
  sandbox: string;
  metadata: Record<string, string>;
  [key: string]: unknown;
};

export interface CreateOptions {
  /** { NAME: { value, hosts } }. */
  secrets?: Record<string, SecretSpec>;
  /** Outbound allowlist; undefined = not restricted, [] = nothing. */
  allowNet?: string[];
  /** { '/guest/path': '/host/dir' | { hostPath, readonly } }. */
  volumes?: Record<string, string | VolumeSpec>;
  /** Carried in every audit event. */
  metadata?: Record<string, string>;
  /** Environment of every command: { K: 'V' } or ['K=V']. */
  env?: Record<string, string> | string[];
  memoryMb?: number;
  vcpus?: number;
  /** Lifetime in seconds (0: none). */
  timeout?: number;
  workdir?: string;
  image?: string;
  stateDir?: string;
  libvirtUri?: string;
  accel?: 'auto' | 'kvm' | 'tcg';
  /** JSON Lines audit file (appended). */
  auditLog?: string;
  /** Called with each audit event on the main thread. */
  onAudit?: (event: AuditEvent) => void;
  /** Seconds to wait for the guest agent. */
  bootTimeout?: number;
  /** Upstream DNS servers: 'IPv4', 'IPv4:port', '[IPv6]' or '[IPv6]:port';
   * undefined = the host's resolver configuration. */
  dnsServers?: string[];
  /** Extra CA file (PEM) trusted for upstream TLS. */
  tlsCaFile?: string;
  /** Host patterns tunnelled without TLS interception. */
  tlsPassthrough?: string[];
  /** Block a request carrying a secret's placeholder to a host not on that
   * secret's list (instead of sending the placeholder unchanged). */
  blockMisdirectedSecrets?: boolean;
}

export interface FileInfo {
  /** Entry name in a listing; the path for stat(). */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits (0o7777). */
  mode: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  uid: number;
  gid: number;
  /** Symlinks: the target; else null. */
  linkTarget: string | null;
}

/** Files in a sandbox (`sb.files`); every call runs off the main thread. */
export class Files {
  write(path: string, data: string | Buffer | Uint8Array,
    options?: { mode?: number; parents?: boolean }): Promise<void>;
  read(path: string, options?: { maxSize?: number }): Promise<Buffer>;
  read(path: string, options: { encoding: BufferEncoding; maxSize?: number }): Promise<string>;
  stat(path: string, options?: { followSymlinks?: boolean }): Promise<FileInfo>;
  /** Sorted by name. */
  list(path: string): Promise<FileInfo[]>;
  exists(path: string): Promise<boolean>;
  mkdir(path: string, options?: { mode?: number; parents?: boolean }): Promise<void>;
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  upload(hostPath: string, guestPath: string, options?: { parents?: boolean }): Promise<void>;
  /** hostPath must not exist yet (its parent must). */
  download(guestPath: string, hostPath: string): Promise<void>;
}

export interface RunOptions {
  env?: Record<string, string> | string[];
  cwd?: string;
  /** Seconds; then the command is killed (result.timedOut). */
  timeout?: number;
  stdin?: string | Buffer;
  /** Bytes captured per stream (the rest is counted and dropped). */
  maxCapture?: number;
}

export interface SpawnOptions {
  env?: Record<string, string> | string[];
  cwd?: string;
  timeout?: number;
  /** Keep stdin open: process.stdin is then a Writable. */
  stdin?: boolean;
}

/** A string runs through /bin/sh -c; an array is the argv. */
export type Command = string | string[];

export class CommandResult {
  /** 0..255, or -1 if the command died of a signal. */
  readonly exitCode: number;
  /** Terminating signal, or 0. */
  readonly signal: number;
  readonly timedOut: boolean;
  readonly durationMs: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly stdoutBuffer: Buffer;
  readonly stderrBuffer: Buffer;
  readonly stdoutTotal: number;
  readonly stderrTotal: number;
  readonly ok: boolean;
}

export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

export class Process implements AsyncIterable<OutputChunk> {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** A Writable when spawned with { stdin: true }, else null. */
  readonly stdin: Writable | null;
  readonly pid: number;
  kill(signo?: number): Promise<void>;
  wait(): Promise<CommandResult>;
  [Symbol.asyncIterator](): AsyncIterator<OutputChunk>;
}

export class Sandbox implements AsyncDisposable {
  static create(options?: CreateOptions): Promise<Sandbox>;
  static list(): Sandbox[];
  readonly id: string;
  readonly isRunning: boolean;
  readonly metadata: Record<string, string>;
  readonly files: Files;
  /** undefined/null: allow everything; []: nothing. */
  setAllowNet(allowNet?: string[] | null): Promise<void>;
  ping(): Promise<void>;
  run(cmd: Command, options?: RunOptions): Promise<CommandResult>;
  spawn(cmd: Command, options?: SpawnOptions): Promise<Process>;
  kill(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export type SandboxErrorCode =
  | 'SANDBOX_E_INVAL' | 'SANDBOX_E_NOMEM' | 'SANDBOX_E_FLAGS' | 'SANDBOX_E_VERSION'
  | 'SANDBOX_E_UNSUPPORTED' | 'SANDBOX_E_IMAGE' | 'SANDBOX_E_LIBVIRT' | 'SANDBOX_E_BOOT'
  | 'SANDBOX_E_PROTOCOL' | 'SANDBOX_E_DEAD' | 'SANDBOX_E_TIMEOUT' | 'SANDBOX_E_NOTFOUND'
  | 'SANDBOX_E_EXEC' | 'SANDBOX_E_IO' | 'SANDBOX_E_BUSY' | 'SANDBOX_E_ACCEL'
  | 'SANDBOX_E_PERM' | 'SANDBOX_E_ABORTED' | 'SANDBOX_E_ISDIR' | 'SANDBOX_E_NOTDIR'
  | 'SANDBOX_E_EXISTS' | 'SANDBOX_E_NOSPACE' | 'SANDBOX_E_NOTEMPTY' | 'SANDBOX_E_TOOBIG';

export class SandboxError extends Error {
  readonly code: SandboxErrorCode;
  /** The library's negative error code. */
  readonly errno: number;
}

export function version(): string;
