/**
 * A throwaway software TPM for host tests: `swtpm socket` on 127.0.0.1 with a temp state dir and
 * a random free port pair (TPM port P, control port P+1), reached with the TCTI
 * "swtpm:host=127.0.0.1,port=P" by both our bindings and tpm2-tools.
 */
import { mkdtempSync, rmSync } from "node:fs";
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

/** Start swtpm; with `ekCert`, swtpm_setup first manufactures it with an EK certificate in NV. */
export async function startSwtpm(options: { ekCert?: boolean } = {}): Promise<Swtpm> {
  const dir = mkdtempSync(join(tmpdir(), "swtpm-"));
  if (options.ekCert) {
    const setup = Bun.spawnSync(
      [
        "swtpm_setup",
        "--tpm2",
        "--tpmstate",
        dir,
        "--create-ek-cert",
        "--create-platform-cert",
        "--overwrite",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    if (setup.exitCode !== 0)
      throw new Error(`swtpm_setup failed: ${setup.stderr.toString()}${setup.stdout.toString()}`);
  }
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
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error("could not start swtpm on a free port");
}
