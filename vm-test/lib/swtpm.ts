/** A swtpm software TPM 2.0 for one guest boot: the guest sees it as a TIS TPM (/dev/tpmrm0). */
import { existsSync, mkdirSync, readdirSync } from "node:fs";

export interface Swtpm {
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
 * Starts swtpm over `stateDir` (created when missing) and waits for its control socket. The state
 * directory keeps the TPM's seeds and NV across boots; PCRs start fresh at every start, like a
 * reboot. Stop it after the boot: QEMU does not.
 */
export async function startSwtpm(stateDir: string, socket: string, opts: SwtpmOptions = {}): Promise<Swtpm> {
  mkdirSync(stateDir, { recursive: true });
  if (opts.pcrBanks && readdirSync(stateDir).length === 0) {
    const setup = Bun.spawnSync(
      [
        "swtpm_setup",
        "--tpm2",
        "--tpmstate",
        stateDir,
        "--pcr-banks",
        opts.pcrBanks,
        "--config",
        "/dev/null",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    if (setup.exitCode !== 0) throw new Error(`swtpm_setup failed: ${setup.stderr.toString()}`);
  }
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

/** Runs `fn` with a swtpm started over `stateDir`, stopping it afterwards whatever happens. */
export async function withSwtpm<T>(
  stateDir: string,
  socket: string,
  fn: (tpm: Swtpm) => Promise<T>,
  opts: SwtpmOptions = {},
): Promise<T> {
  const tpm = await startSwtpm(stateDir, socket, opts);
  try {
    return await fn(tpm);
  } finally {
    await tpm.stop();
  }
}
