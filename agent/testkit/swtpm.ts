/**
 * Throwaway software TPMs (swtpm), one module for both ways the tests reach one:
 * - over TCP (`startSwtpm`): host tests, bench and the VM scenarios that seal on the host. A temp
 *   (or given) state dir and a random free port pair (TPM port P, control port P+1), reached with
 *   the TCTI "swtpm:host=127.0.0.1,port=P" by both our bindings and tpm2-tools.
 * - over a unix socket for QEMU (`startQemuSwtpm`/`withSwtpm`): one TPM per guest boot, which the
 *   guest sees as a TIS TPM (/dev/tpmrm0).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Swtpm {
  tcti: string;
  dir: string;
  /** Environment for tpm2-tools pointing at this TPM. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export const hasSwtpm = Bun.which("swtpm") !== null && Bun.which("tpm2_createprimary") !== null;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once("error", () => resolve(false));
    s.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve(true);
    });
  });
}

/** swtpm_setup over the state directory `dir` (a TPM manufactured with `args`). */
function manufacture(dir: string, args: string[]): void {
  const setup = Bun.spawnSync(["swtpm_setup", "--tpm2", "--tpmstate", dir, ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (setup.exitCode !== 0)
    throw new Error(`swtpm_setup failed: ${setup.stderr.toString()}${setup.stdout.toString()}`);
}

/**
 * Start swtpm over TCP; with `ekCert`, swtpm_setup first manufactures it with an EK certificate in NV.
 * With `stateDir` the TPM state lives there and is kept on stop (a VM's vTPM can go on with it).
 */
export async function startSwtpm(options: { ekCert?: boolean; stateDir?: string } = {}): Promise<Swtpm> {
  const dir = options.stateDir ?? mkdtempSync(join(tmpdir(), "swtpm-"));
  if (options.stateDir) mkdirSync(dir, { recursive: true });
  const removeDir = () => {
    if (!options.stateDir) rmSync(dir, { recursive: true, force: true });
  };
  if (options.ekCert) manufacture(dir, ["--create-ek-cert", "--create-platform-cert", "--overwrite"]);
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    if (!(await portFree(port)) || !(await portFree(port + 1))) continue;
    const proc = Bun.spawn(
      [
        "swtpm",
        "socket",
        "--tpm2",
        "--server",
        `type=tcp,port=${port},bindaddr=127.0.0.1`,
        "--ctrl",
        `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
        "--tpmstate",
        `dir=${dir}`,
        "--flags",
        "not-need-init,startup-clear",
      ],
      { stdout: "ignore", stderr: "pipe" },
    );
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && proc.exitCode === null && !(await canConnect(port))) await Bun.sleep(20);
    if (proc.exitCode !== null || !(await canConnect(port))) {
      proc.kill();
      continue;
    }
    const tcti = `swtpm:host=127.0.0.1,port=${port}`;
    return {
      tcti,
      dir,
      env: { TPM2TOOLS_TCTI: tcti },
      async stop() {
        proc.kill();
        await proc.exited;
        removeDir();
      },
    };
  }
  removeDir();
  throw new Error("could not start swtpm on a free port");
}

/** A swtpm attached to one QEMU guest. */
export interface QemuSwtpm {
  /** QEMU arguments attaching the TPM (pass as BootOptions.extraQemuArgs). */
  qemuArgs: string[];
  stop(): Promise<void>;
}

export interface SwtpmOptions {
  /**
   * PCR banks of a fresh state (swtpm_setup --pcr-banks, e.g. "sha256,sha384"); default: swtpm's
   * own. Only used when the state directory has no TPM yet.
   */
  pcrBanks?: string;
  /**
   * OVMF sends TPM2_Startup itself (and measures into the fresh PCRs); a direct kernel boot has no
   * firmware that does, so by default swtpm starts the TPM up.
   */
  firmwareStartup?: boolean;
}

/**
 * Starts swtpm for QEMU over `stateDir` (created when missing) and waits for its control socket.
 * The state directory keeps the TPM's seeds and NV across boots; PCRs start fresh at every start,
 * like a reboot. Stop it after the boot: QEMU does not.
 */
export async function startQemuSwtpm(
  stateDir: string,
  socket: string,
  opts: SwtpmOptions = {},
): Promise<QemuSwtpm> {
  mkdirSync(stateDir, { recursive: true });
  if (opts.pcrBanks && readdirSync(stateDir).length === 0)
    manufacture(stateDir, ["--pcr-banks", opts.pcrBanks, "--config", "/dev/null"]);
  const proc = Bun.spawn(
    [
      "swtpm",
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${stateDir}`,
      "--ctrl",
      `type=unixio,path=${socket}`,
      ...(opts.firmwareStartup ? [] : ["--flags", "startup-clear"]),
    ],
    { stdout: "ignore", stderr: "inherit" },
  );
  const stop = async () => {
    proc.kill();
    await proc.exited;
  };
  for (let i = 0; i < 100 && !existsSync(socket) && proc.exitCode === null; i++) await Bun.sleep(50);
  if (!existsSync(socket)) {
    await stop();
    throw new Error(`swtpm did not create its control socket ${socket} (state ${stateDir})`);
  }
  return {
    qemuArgs: [
      "-chardev",
      `socket,id=chrtpm,path=${socket}`,
      "-tpmdev",
      "emulator,id=tpm0,chardev=chrtpm",
      "-device",
      "tpm-tis,tpmdev=tpm0",
    ],
    stop,
  };
}

/** Runs `fn` with a QEMU swtpm started over `stateDir`, stopping it afterwards whatever happens. */
export async function withSwtpm<T>(
  stateDir: string,
  socket: string,
  fn: (tpm: QemuSwtpm) => Promise<T>,
  opts: SwtpmOptions = {},
): Promise<T> {
  const tpm = await startQemuSwtpm(stateDir, socket, opts);
  try {
    return await fn(tpm);
  } finally {
    await tpm.stop();
  }
}

/** The storage primary key as tpm2-tools creates it (systemd's and our SRK template). */
export const TOOLS_SRK_ARGS = [
  "-C",
  "o",
  "-g",
  "sha256",
  "-G",
  "ecc256:null:aes128cfb",
  "-a",
  "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda",
];

/**
 * tpm2-tools (an independent implementation): load a sealed object (obj.priv and obj.pub, the
 * TPM2B_PRIVATE and TPM2B_PUBLIC, in DIR) under its own SRK and unseal it through a PolicyPCR
 * session over PCRS (e.g. "sha256:7,16"), plus PolicyAuthValue with PIN when one is given.
 */
export function toolsUnsealFiles(tpm: Swtpm, dir: string, pcrs: string, pin?: string): Buffer {
  const tool = (args: string[]) => tpm2Tool(tpm, dir, args);
  try {
    tool(["tpm2_createprimary", ...TOOLS_SRK_ARGS, "-c", "srk.ctx"]);
    tool(["tpm2_load", "-C", "srk.ctx", "-u", "obj.pub", "-r", "obj.priv", "-c", "obj.ctx"]);
    tool(["tpm2_flushcontext", "-t"]);
    tool(["tpm2_startauthsession", "--policy-session", "-S", "session.ctx"]);
    tool(["tpm2_policypcr", "-S", "session.ctx", "-l", pcrs]);
    if (pin !== undefined) tool(["tpm2_policyauthvalue", "-S", "session.ctx"]);
    return tool([
      "tpm2_unseal",
      "-c",
      "obj.ctx",
      "-p",
      `session:session.ctx${pin === undefined ? "" : `+${pin}`}`,
    ]);
  } finally {
    flushTpm2Tools(tpm, dir);
  }
}

/** Runs the tpm2-tools command ARGS against `tpm` in `dir`; returns its stdout, throws with its stderr. */
export function tpm2Tool(tpm: Swtpm, dir: string, args: string[], stdin?: Uint8Array): Buffer {
  const r = Bun.spawnSync(args, { env: { ...process.env, ...tpm.env }, cwd: dir, stdin: stdin ?? "ignore" });
  if (r.exitCode !== 0) throw new Error(`${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** swtpm has no resource manager: flush the transient objects and sessions tpm2-tools left loaded. */
export function flushTpm2Tools(tpm: Swtpm, dir: string): void {
  tpm2Tool(tpm, dir, ["tpm2_flushcontext", "-t"]);
  tpm2Tool(tpm, dir, ["tpm2_flushcontext", "-s"]);
}
