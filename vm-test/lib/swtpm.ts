/** A swtpm software TPM 2.0 for one guest boot: the guest sees it as a TIS TPM (/dev/tpmrm0). */
import { existsSync, mkdirSync } from "node:fs";

export interface Swtpm {
  /** QEMU arguments attaching the TPM (pass as BootOptions.extraQemuArgs). */
  qemuArgs: string[];
  stop(): Promise<void>;
}

/**
 * Starts swtpm over `stateDir` (created when missing) and waits for its control socket. The state
 * directory keeps the TPM's seeds and NV across boots; PCRs start fresh at every start, like a
 * reboot. Stop it after the boot: QEMU does not.
 */
export async function startSwtpm(stateDir: string, socket: string): Promise<Swtpm> {
  mkdirSync(stateDir, { recursive: true });
  const proc = Bun.spawn(
    [
      "swtpm",
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${stateDir}`,
      "--ctrl",
      `type=unixio,path=${socket}`,
      "--flags",
      "startup-clear",
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
): Promise<T> {
  const tpm = await startSwtpm(stateDir, socket);
  try {
    return await fn(tpm);
  } finally {
    await tpm.stop();
  }
}
