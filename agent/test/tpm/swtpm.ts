/**
 * A throwaway software TPM for host tests: `swtpm socket` on 127.0.0.1 with a temp state dir and
 * a random free port pair (TPM port P, control port P+1), reached with the TCTI
 * "swtpm:host=127.0.0.1,port=P" by both our bindings and tpm2-tools.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
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

/**
 * Start swtpm; with `ekCert`, swtpm_setup first manufactures it with an EK certificate in NV.
 * With `stateDir` the TPM state lives there and is kept on stop (a VM's vTPM can go on with it).
 */
export async function startSwtpm(options: { ekCert?: boolean; stateDir?: string } = {}): Promise<Swtpm> {
  const dir = options.stateDir ?? mkdtempSync(join(tmpdir(), "swtpm-"));
  if (options.stateDir) mkdirSync(dir, { recursive: true });
  const removeDir = () => {
    if (!options.stateDir) rmSync(dir, { recursive: true, force: true });
  };
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
        removeDir();
      },
    };
  }
  removeDir();
  throw new Error("could not start swtpm on a free port");
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
  const tool = (args: string[]): Buffer => {
    const r = Bun.spawnSync(args, { env: { ...process.env, ...tpm.env }, cwd: dir, stdin: "ignore" });
    if (r.exitCode !== 0) throw new Error(`${args.join(" ")}: ${r.stderr.toString()}`);
    return r.stdout;
  };
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
    // swtpm has no resource manager: flush what tpm2-tools left loaded.
    tool(["tpm2_flushcontext", "-t"]);
    tool(["tpm2_flushcontext", "-s"]);
  }
}
