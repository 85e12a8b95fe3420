/**
 * Hostile programs and hostile key targets (issue #14, gaps 3 and 5, subprocess half): a key
 * program that leaves a setsid daemon holding its output, ignores SIGTERM, or floods stderr or
 * stdout must not keep the agent waiting or growing; `fetch-key --out` must never hand the key to
 * a planted symlink, FIFO, device, existing file or /dev/stdout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeKeyFile } from "../../src/cli/key-file.ts";
import { run } from "../../src/command.ts";
import type { ExecConfig, OidcConfig } from "../../src/config/providers/index.ts";
import { CommandError, KeyProviderError } from "../../src/errors.ts";
import { create as createExec } from "../../src/providers/exec.ts";
import { MAX_KEY_BYTES } from "../../src/providers/key-size.ts";
import { create as createOidc } from "../../src/providers/oidc.ts";
import { RUN_OUTPUT_MAX, STDERR_TAIL_MAX } from "../../src/subprocess.ts";
import { rejection } from "../../testkit/harness.ts";
import { bounded } from "./limits.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const MAIN = join(ROOT, "agent/src/main.ts");
const GIB = 1024 * 1024 * 1024;
const ctx = { volume: "rootfs", configDir: "/nonexistent", freshKey: "never" } as const;
const isRoot = process.getuid?.() === 0;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hostile-subprocess-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const exec = (args: string[], timeoutMs: number): ExecConfig => ({
  type: "exec",
  command: "sh",
  args: ["-c", ...args],
  timeoutMs,
});

/** A live (not zombie) process: a killed daemon reparented to a non-reaping pid 1 stays a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Whether `pid` still runs a second later (SIGKILL takes effect asynchronously). */
async function alive(pid: number): Promise<boolean> {
  for (let i = 0; i < 20 && running(pid); i++) await Bun.sleep(50);
  return running(pid);
}

/** A valid fde.toml whose rootfs key comes from the given [rootfs.encrypt.exec] body. */
const fdeToml = (rootfsExec: string) =>
  `[rootfs]\ndelta_location = "ram"\n[rootfs.encrypt.exec]\n${rootfsExec}\n` +
  `[delta]\n[delta.encrypt.exec]\ncommand = "printf"\nargs = ["delta-key"]\n`;

/** A daemon that leaves the program's session and writes its pid to `file`, holding stdout/stderr. */
const daemon = (file: string) => `setsid sh -c 'echo $$ > ${file}; exec sleep 60' &`;

async function daemonPid(file: string): Promise<number> {
  for (let i = 0; i < 250 && !existsSync(file); i++) await Bun.sleep(20);
  return Number(readFileSync(file, "utf8").trim());
}

describe("bounded subprocesses", () => {
  test("exec: a setsid daemon holding stdout after the program exited ends getKey well before the timeout, and dies", async () => {
    const pidFile = join(dir, "daemon-1.pid");
    const err = await bounded(
      () => rejection(createExec(exec([`printf key; ${daemon(pidFile)}`], 20_000), ctx).getKey()),
      { ms: 6000, mib: 100 },
    );
    expect(err).toBeInstanceOf(KeyProviderError);
    expect(err.message).toContain("holding its stdout after it exited");
    expect(err.message).toContain("command 'sh' (volume rootfs)");
    expect(await alive(await daemonPid(pidFile))).toBe(false);
  }, 15_000);

  test("exec: at the timeout the group and a setsid escapee are killed, within timeout + a few seconds", async () => {
    const pidFile = join(dir, "daemon-2.pid");
    const err = await bounded(
      () => rejection(createExec(exec([`${daemon(pidFile)} sleep 60`], 500), ctx).getKey()),
      { ms: 5500, mib: 100 },
    );
    expect(err.message).toContain("did not finish within 0.5 s and was killed");
    expect(await alive(await daemonPid(pidFile))).toBe(false);
  }, 15_000);

  test("run(): a program that ignores SIGTERM, with a child holding the pipes, is SIGKILLed as a group", async () => {
    const err = await bounded(
      () => rejection(run("sh", ["-c", "trap '' TERM; sleep 60 & wait"], { timeoutMs: 300 })),
      { ms: 5000, mib: 100 },
    );
    expect(err).toBeInstanceOf(CommandError);
    expect(err.message).toContain("timed out after 300 ms");
  }, 15_000);

  test("run(): a daemon left behind after a successful exit is detached from, killed and warned about", async () => {
    const pidFile = join(dir, "daemon-3.pid");
    const result = await bounded(() => run("sh", ["-c", `${daemon(pidFile)} echo done`]), {
      ms: 5000,
      mib: 100,
    });
    expect(new TextDecoder().decode(result.stdout).trim()).toBe("done");
    expect(await alive(await daemonPid(pidFile))).toBe(false);
  }, 15_000);

  test("exec: 1 GiB of stderr keeps only a tail (RSS bounded) and its last line reaches the error", async () => {
    const err = await bounded(
      () =>
        rejection(
          createExec(
            exec([`head -c ${GIB} /dev/zero | tr '\\0' e >&2; echo LAST-WORDS >&2; exit 3`], 60_000),
            ctx,
          ).getKey(),
        ),
      { ms: 20_000, mib: 256 },
    );
    expect(err.message).toContain("exited with code 3");
    expect(err.message).toContain("LAST-WORDS");
    expect(err.message.length).toBeLessThan(STDERR_TAIL_MAX + 1000);
  }, 30_000);

  test("run(): stderr is a bounded tail; stdout over RUN_OUTPUT_MAX is refused", async () => {
    const err = (await rejection(
      run("sh", ["-c", "head -c 4000000 /dev/zero | tr '\\0' e >&2; echo LAST-WORDS >&2; exit 2"]),
    )) as CommandError;
    expect(err.stderr.length).toBeLessThanOrEqual(STDERR_TAIL_MAX);
    expect(err.stderr).toEndWith("LAST-WORDS\n");
    const big = await bounded(() => rejection(run("head", ["-c", String(RUN_OUTPUT_MAX + 1), "/dev/zero"])), {
      ms: 5000,
      mib: 200,
    });
    expect(big.message).toContain(`printed more than ${RUN_OUTPUT_MAX} bytes`);
  }, 15_000);

  test("exec: stdout over MAX_KEY_BYTES is not a key", async () => {
    const err = await rejection(
      createExec(exec([`head -c ${MAX_KEY_BYTES + 1} /dev/zero`], 5000), ctx).getKey(),
    );
    expect(err.message).toContain(`printed more than ${MAX_KEY_BYTES} bytes`);
    const fits = await createExec(exec([`head -c ${MAX_KEY_BYTES} /dev/zero`], 5000), ctx).getKey();
    expect(fits.length).toBe(MAX_KEY_BYTES);
  });

  test("oidc: an endless token command is cut at MAX_KEY_BYTES, not read until the timeout", async () => {
    const config: OidcConfig = {
      type: "oidc",
      tokenCommand: { command: "yes", args: [], timeoutMs: 20_000 },
      keyId: "k",
      aliyun: {
        oidcProviderArn: "arn:p",
        roleArn: "arn:r",
        regionId: "cn-beijing",
        stsEndpoint: "http://127.0.0.1:9",
      },
    };
    const err = await bounded(() => rejection(createOidc(config, ctx).getKey()), { ms: 5000, mib: 100 });
    expect(err.message).toContain(`the token command yes printed more than ${MAX_KEY_BYTES} bytes`);
  }, 15_000);

  test("the agent process itself exits promptly when a key program leaves a daemon on its stdout", async () => {
    const pidFile = join(dir, "daemon-4.pid");
    const conf = join(dir, "cli-daemon");
    mkdirSync(conf);
    const script = join(conf, "getkey");
    writeFileSync(script, `#!/bin/sh\nprintf key\n${daemon(pidFile)}\n`, { mode: 0o755 });
    writeFileSync(join(conf, "fde.toml"), fdeToml(`command = "${script}"\ntimeout_secs = 20`));
    const started = performance.now();
    const proc = Bun.spawn([BUN, MAIN, "-c", conf, "fetch-key", "--volume", "rootfs"], {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
      timeout: 25_000,
    });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(performance.now() - started).toBeLessThan(8000);
    expect(code).toBe(1);
    expect(stderr).toContain("warning: exec key provider");
    expect(stderr).toContain("holding its stdout");
    expect(await alive(await daemonPid(pidFile))).toBe(false);
  }, 30_000);
});

describe("interrupting the agent", () => {
  test("SIGINT to the agent reaches its programs' own groups and ends the agent with 130", async () => {
    const pidFile = join(dir, "interrupted.pid");
    const script = join(dir, "interrupted.ts");
    writeFileSync(
      script,
      `import { run } from ${JSON.stringify(join(ROOT, "agent/src/command.ts"))};\n` +
        `await run("sh", ["-c", "echo $$ > ${pidFile}; exec sleep 60"]);\n`,
    );
    const agent = Bun.spawn([BUN, script], {
      stdout: "ignore",
      stderr: "pipe",
      stdin: "ignore",
      timeout: 20_000,
    });
    const child = await daemonPid(pidFile);
    process.kill(agent.pid, "SIGINT");
    expect(await bounded(() => agent.exited, { ms: 5000, mib: 100 })).toBe(130);
    expect(await alive(child)).toBe(false);
  }, 30_000);
});

describe("fetch-key --out targets", () => {
  const KEY = "hostile-target-key";
  const key = () => new TextEncoder().encode(KEY);

  async function fetchKey(conf: string, ...args: string[]) {
    const proc = Bun.spawn([BUN, MAIN, "-c", conf, "fetch-key", "--volume", "rootfs", ...args], {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
      // The old code blocked opening a FIFO without a reader: end it rather than hang the suite.
      timeout: 10_000,
    });
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { stdout, stderr, code };
  }

  let conf: string;
  beforeAll(() => {
    conf = join(dir, "cli-key");
    mkdirSync(conf);
    writeFileSync(join(conf, "fde.toml"), fdeToml(`command = "printf"\nargs = ["${KEY}"]`));
  });

  test("a planted symlink is refused and its target untouched (also with --force)", async () => {
    const victim = join(dir, "victim");
    writeFileSync(victim, "victim data", { mode: 0o644 });
    const link = join(dir, "planted-link");
    symlinkSync(victim, link);
    for (const extra of [[], ["--force"]]) {
      const r = await fetchKey(conf, "--out", link, ...extra);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`--out ${link} is a symbolic link`);
      expect(r.stderr).not.toContain(KEY);
      expect(readFileSync(victim, "utf8")).toBe("victim data");
      expect(statSync(victim).mode & 0o777).toBe(0o644);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
    }
  }, 30_000);

  test("/dev/stdout (a symlink to the terminal or pipe) is refused; nothing is written", async () => {
    const r = await fetchKey(conf, "--out", "/dev/stdout");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--out /dev/stdout is a symbolic link");
    expect(r.stdout).toBe("");
  });

  test("a FIFO is refused at once, never opened", async () => {
    const fifo = join(dir, "planted-fifo");
    Bun.spawnSync(["mkfifo", "-m", "666", fifo]);
    const r = await bounded(() => fetchKey(conf, "--out", fifo), { ms: 8000, mib: 100 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is a FIFO");
    expect(statSync(fifo).mode & 0o777).toBe(0o666);
  }, 15_000);

  test("an existing world-readable file is neither written nor chmodded without --force", async () => {
    const file = join(dir, "existing");
    writeFileSync(file, "old", { mode: 0o644 });
    const r = await fetchKey(conf, "--out", file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("already exists; it is not overwritten");
    expect(readFileSync(file, "utf8")).toBe("old");
    expect(statSync(file).mode & 0o777).toBe(0o644);
  });

  test.skipIf(!isRoot)("a planted device node (a terminal) is refused and its mode kept", () => {
    const tty = join(dir, "planted-tty");
    // Major 1 minor 3 is /dev/null: a device that accepts writes, like a terminal.
    Bun.spawnSync(["mknod", "-m", "666", tty, "c", "1", "3"]);
    expect(() => writeKeyFile(tty, key(), true)).toThrow("is a character device");
    expect(statSync(tty).mode & 0o777).toBe(0o666);
  });

  test.skipIf(!isRoot)("--force does not replace another user's file", () => {
    const file = join(dir, "others");
    writeFileSync(file, "theirs", { mode: 0o644 });
    chownSync(file, 4242, 4242);
    expect(() => writeKeyFile(file, key(), true)).toThrow("belongs to uid 4242");
    expect(readFileSync(file, "utf8")).toBe("theirs");
  });

  test("--force replaces your own file with a new 0600 file; a new file is 0600 whatever the umask", () => {
    const file = join(dir, "mine");
    writeFileSync(file, "old", { mode: 0o666 });
    const oldInode = statSync(file).ino;
    writeKeyFile(file, key(), true);
    expect(readFileSync(file, "utf8")).toBe(KEY);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // Renamed over: the old (world-readable) inode, which others may hold open, never had the key.
    expect(statSync(file).ino).not.toBe(oldInode);
    const fresh = join(dir, "fresh");
    const old = process.umask(0);
    try {
      writeKeyFile(fresh, key(), false);
    } finally {
      process.umask(old);
    }
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
    expect(() => writeKeyFile(join(dir, "no-such-dir", "k"), key(), false)).toThrow("cannot create");
  });
});
