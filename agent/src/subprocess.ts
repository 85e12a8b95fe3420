/**
 * The one way the agent runs a program: without a shell, in a session (process group) of its own,
 * with bounded time and bounded memory for its output. command.ts's run() and the exec and oidc
 * key providers are thin wrappers that turn the outcome into their own errors.
 *
 * Bounds, in order of escalation:
 * - timeout: SIGTERM to the program's whole group, SIGKILL KILL_GRACE_MS later (plus every process
 *   still carrying the spawn marker, so a `setsid` escapee dies too);
 * - once the program itself has exited, its pipes get PIPE_GRACE_MS to close; a descendant that
 *   still holds them (a daemon) is killed with its group, warned about and detached from;
 * - stdout is capped (maxStdout; over it the group is killed), stderr keeps only its last
 *   STDERR_TAIL_MAX bytes.
 * Nothing here logs argv: callers decide whether their arguments may be shown.
 */
import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { FdeError } from "./errors.ts";
import { log } from "./log.ts";

/** Largest stdout of any other program (sfdisk/lvm JSON, dumpe2fs -h, a grub.cfg through mtype). */
export const RUN_OUTPUT_MAX = 16 * 1024 * 1024;
/** How much of stderr is kept: its last bytes, which hold the error that ended the program. */
export const STDERR_TAIL_MAX = 64 * 1024;
/** Between SIGTERM and SIGKILL at a timeout; also how long a SIGKILLed program gets to be reaped. */
export const KILL_GRACE_MS = 1000;
/** How long the pipes may stay open after the program exited before its leftovers are killed. */
export const PIPE_GRACE_MS = 1000;
/** Environment variable every spawned program inherits (with a fresh id), to find its descendants. */
export const SPAWN_MARKER_ENV = "CRYPTPILOT_FDE_SPAWN";

export interface SpawnOptions {
  /** Bytes written to stdin, then closed. A string is encoded into a buffer that is zeroed after. */
  stdin?: Uint8Array | string;
  /** Kill the program's group after this many milliseconds (no limit when undefined). */
  timeoutMs?: number;
  /** Largest stdout accepted; more kills the group and sets `overflowed`. */
  maxStdout: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

export interface SpawnOutcome {
  /** Exit code, or null when the program died of a signal (or was abandoned unreaped). */
  code: number | null;
  signal: string | null;
  /** Empty when `overflowed`. */
  stdout: Uint8Array;
  /** The last STDERR_TAIL_MAX bytes, decoded. */
  stderr: string;
  timedOut: boolean;
  overflowed: boolean;
  /**
   * Pids of descendants killed because they held the output open after the program ended, or
   * outlived a timeout. Non-empty after a normal exit means the output may be incomplete.
   */
  leftovers: number[];
}

// Children's groups are not in the terminal's foreground group: forward an interrupt to them, and
// kill them when the agent exits, as an inherited group would have been.
const live = new Set<number>();
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

function onSignal(signal: NodeJS.Signals): void {
  for (const pgid of live) signalGroup(pgid, signal);
  // The only listener is ours: end the agent the way the signal would have without it.
  if (process.listenerCount(signal) === 1) process.exit(128 + (constants.signals[signal] ?? 0));
}

function onExit(): void {
  for (const pgid of live) signalGroup(pgid, "SIGKILL");
}

function track(pgid: number): void {
  if (live.size === 0) {
    for (const s of FORWARDED) process.on(s, onSignal);
    process.on("exit", onExit);
  }
  live.add(pgid);
}

function untrack(pgid: number): void {
  if (!live.delete(pgid) || live.size > 0) return;
  for (const s of FORWARDED) process.off(s, onSignal);
  process.off("exit", onExit);
}

/** Collects at most `max` bytes; `overflowed` once more arrived. */
class CappedSink {
  private chunks: Uint8Array[] = [];
  size = 0;
  overflowed = false;
  constructor(private readonly max: number) {}
  push(chunk: Uint8Array): void {
    if (this.overflowed) return;
    if (this.size + chunk.length > this.max) {
      this.overflowed = true;
      this.wipe();
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
  bytes(): Uint8Array {
    const out = Buffer.concat(this.chunks, this.size);
    this.wipe();
    return out;
  }
  /** Output may be a key: zero what was read before dropping it. */
  wipe(): void {
    for (const c of this.chunks) c.fill(0);
    this.chunks = [];
    this.size = 0;
  }
}

/** Keeps the last `max` bytes (memory stays within max plus one chunk). */
class TailSink {
  private chunks: Uint8Array[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.chunks.length > 1 && this.size - this.chunks[0]!.length >= this.max) {
      this.size -= this.chunks.shift()!.length;
    }
  }
  text(): string {
    const all = Buffer.concat(this.chunks, this.size);
    return new TextDecoder().decode(all.subarray(Math.max(0, all.length - this.max)));
  }
}

async function drain(
  reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> },
  sink: { push(c: Uint8Array): void },
): Promise<void> {
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || value === undefined) return;
      sink.push(value);
    }
  } catch {
    // Cancelled (abandoned or overflowed): what was read so far stays in the sink.
  }
}

/**
 * Processes other than this one whose environment carries `marker`: the program's descendants,
 * including those that left its group with setsid. Best effort: a process may clear its
 * environment, and one of another user is not readable.
 */
export function findMarked(marker: string): { pid: number; pgid: number; name: string }[] {
  const needle = `${SPAWN_MARKER_ENV}=${marker}\0`;
  const found: { pid: number; pgid: number; name: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${pid}/environ`, "latin1").includes(needle)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
      const close = stat.lastIndexOf(")");
      const fields = stat.slice(close + 2).split(" ");
      // After "pid (comm) ": state ppid pgrp ...
      found.push({ pid, pgid: Number(fields[2]), name: stat.slice(stat.indexOf("(") + 1, close) });
    } catch {
      // Exited meanwhile, or not ours to read.
    }
  }
  return found;
}

/** SIGKILL every marked process with its group (never the agent's own group). */
function killMarked(marker: string): { pid: number; name: string }[] {
  const ownGroup = Number(readFileSync("/proc/self/stat", "latin1").split(") ")[1]?.split(" ")[2]);
  const found = findMarked(marker);
  for (const p of found) {
    if (p.pgid > 1 && p.pgid !== ownGroup) signalGroup(p.pgid, "SIGKILL");
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // Gone.
    }
  }
  return found;
}

/**
 * Run `cmd` with `args` under the bounds above. Throws an FdeError only when the program cannot
 * be started; every other ending is described by the outcome. `label` names the program in log
 * lines (never its arguments).
 */
export async function spawnBounded(
  cmd: string,
  args: string[],
  options: SpawnOptions,
  label = cmd,
): Promise<SpawnOutcome> {
  // Web Crypto's global, not node:crypto: every command that runs a program loads this module.
  const marker = crypto.randomUUID();
  let proc: Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn([cmd, ...args], {
      stdin: options.stdin === undefined ? "ignore" : "pipe",
      stdout: "pipe",
      stderr: "pipe",
      // setsid(): a group of its own, which a timeout kills as a whole.
      detached: true,
      env: { ...process.env, ...options.env, [SPAWN_MARKER_ENV]: marker },
      cwd: options.cwd,
    });
  } catch (cause) {
    throw new FdeError(`cannot start ${cmd}: ${(cause as Error).message}`, { cause });
  }
  const pgid = proc.pid;
  track(pgid);
  const out = new CappedSink(options.maxStdout);
  const err = new TailSink(STDERR_TAIL_MAX);
  const outReader = proc.stdout.getReader();
  const errReader = proc.stderr.getReader();
  let timedOut = false;
  // Marked processes killed so far (at the timeout and when detaching), for the warning.
  const killed = new Map<number, string>();
  const sweep = () => {
    for (const p of killMarked(marker)) killed.set(p.pid, p.name);
  };
  const timers: Timer[] = [];
  let finished = false;
  const later = (ms: number, fn: () => void) => {
    if (!finished) timers.push(setTimeout(fn, ms));
  };

  let abandon: () => void = () => {};
  const abandoned = new Promise<"abandoned">((resolve) => {
    abandon = () => resolve("abandoned");
  });
  let detached = false;
  const detach = (why: string) => {
    // Both the pipe grace and the post-SIGKILL wait may end here; warn once.
    if (detached) return;
    detached = true;
    sweep();
    signalGroup(pgid, "SIGKILL");
    const who =
      [...killed].map(([pid, name]) => `${name} (pid ${pid})`).join(", ") ||
      "an unknown process (one that cleared its environment)";
    log.warn(`${label}: ${why}; killed ${who} with its process group and stopped reading its output`);
    void outReader.cancel().catch(() => {});
    void errReader.cancel().catch(() => {});
    abandon();
  };

  if (options.timeoutMs !== undefined) {
    later(options.timeoutMs, () => {
      timedOut = true;
      signalGroup(pgid, "SIGTERM");
      later(KILL_GRACE_MS, () => {
        signalGroup(pgid, "SIGKILL");
        sweep();
        // Not reaped even after SIGKILL (stuck in the kernel): stop waiting for it.
        later(KILL_GRACE_MS, () => detach(`did not exit ${KILL_GRACE_MS} ms after SIGKILL`));
      });
    });
  }

  const stdinDone = writeStdin(proc, options.stdin);
  const stdoutDone = drain(outReader, {
    push: (c) => {
      out.push(c);
      if (out.overflowed) {
        // Not worth reading on: stop the program and the read.
        signalGroup(pgid, "SIGKILL");
        void outReader.cancel().catch(() => {});
      }
    },
  });
  const pipesDone = Promise.all([stdoutDone, drain(errReader, err)]);
  void proc.exited.then(() =>
    later(PIPE_GRACE_MS, () => detach(`exited, but its output stayed open ${PIPE_GRACE_MS} ms later`)),
  );

  try {
    await Promise.race([Promise.all([pipesDone, proc.exited]), abandoned]);
  } finally {
    finished = true;
    for (const t of timers) clearTimeout(t);
    untrack(pgid);
  }
  void stdinDone;
  return {
    code: proc.exitCode,
    signal: proc.signalCode === null ? null : String(proc.signalCode),
    stdout: out.overflowed ? new Uint8Array(0) : out.bytes(),
    stderr: err.text(),
    timedOut,
    overflowed: out.overflowed,
    leftovers: [...killed.keys()],
  };
}

/** ": line / line" from the last `lines` lines of stderr, for an error message ("" when empty). */
export function stderrDetail(stderr: string, lines: number): string {
  const text = stderr.trim();
  return text ? `: ${text.split("\n").slice(-lines).join(" / ")}` : "";
}

/** Writes stdin without blocking the reads (a program may fill stderr before reading its input). */
async function writeStdin(proc: Bun.Subprocess<"pipe" | "ignore">, input: Uint8Array | string | undefined) {
  if (input === undefined || typeof proc.stdin !== "object" || proc.stdin === null) return;
  const owned = typeof input === "string";
  const bytes = owned ? new TextEncoder().encode(input) : input;
  try {
    proc.stdin.write(bytes);
    await proc.stdin.end();
  } catch {
    // The program closed its stdin early; its exit code says whether that was a failure.
  } finally {
    // A caller's buffer stays the caller's (often used again, e.g. format then open) to zero.
    if (owned) bytes.fill(0);
  }
}
