/**
 * configfs-tsm report ABI (Linux >= 6.7): mkdir a report entry, write the 64-byte user data to
 * `inblob`, read the signed report from `outblob` (and the certificate table from `auxblob`),
 * check `generation` to detect a concurrent writer, rmdir. The filesystem operations are an
 * explicit input so tests can run the same sequence against a temp dir that emulates the kernel.
 */
import { randomBytes } from "node:crypto";
import { statfsSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { FdeError } from "../errors.ts";

/**
 * configfs's mount point. The kernel creates the directory when configfs registers (built in, or
 * the configfs module loaded); systemd mounts it in the booted system, the before-sysroot stage
 * mounts it in the initrd when nobody has (boot/before-sysroot.ts).
 */
export const CONFIGFS_ROOT = "/sys/kernel/config";
export const TSM_ROOT = `${CONFIGFS_ROOT}/tsm`;

/** statfs f_type of configfs (CONFIGFS_MAGIC, include/uapi/linux/magic.h). */
export const CONFIGFS_MAGIC = 0x62656570;

/** Whether `path` is a mounted configfs (not just the empty directory sysfs shows before). */
export function isConfigfs(path: string = CONFIGFS_ROOT): boolean {
  try {
    return statfsSync(path).type === CONFIGFS_MAGIC;
  } catch {
    return false;
  }
}

/** The few filesystem calls the ABI needs; `nodeTsmFs` is the real one. */
export interface TsmFs {
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
}

export const nodeTsmFs: TsmFs = {
  mkdir: (p) => fsp.mkdir(p),
  rmdir: (p) => fsp.rmdir(p),
  readFile: async (p) => new Uint8Array(await fsp.readFile(p)),
  writeFile: (p, d) => fsp.writeFile(p, d),
};

export interface TsmOptions {
  /** configfs-tsm mount point (default /sys/kernel/config/tsm). */
  root?: string;
  fs?: TsmFs;
}

export interface TsmReportRequest extends TsmOptions {
  /** Expected `provider` ("tdx_guest", "sev_guest"); a mismatch is an error. */
  provider: string;
  /** Exactly 64 bytes: both the TDX and the SEV guest drivers reject other lengths. */
  inblob: Uint8Array;
  /** SEV VMPL; written as decimal text before inblob. */
  privlevel?: number;
  auxblob?: boolean;
}

export interface TsmReport {
  outblob: Uint8Array;
  auxblob?: Uint8Array;
}

function entryDir(root: string): string {
  return join(root, "report", `cryptpilot-${process.pid}-${randomBytes(4).toString("hex")}`);
}

const decoder = new TextDecoder();

/**
 * Create a report entry, read its provider, remove it. Returns undefined when configfs-tsm is
 * absent or refuses the mkdir (no TSM driver loaded).
 */
export async function tsmProvider(options: TsmOptions = {}): Promise<string | undefined> {
  const fs = options.fs ?? nodeTsmFs;
  const dir = entryDir(options.root ?? TSM_ROOT);
  try {
    await fs.mkdir(dir);
  } catch {
    return undefined;
  }
  try {
    return decoder.decode(await fs.readFile(join(dir, "provider"))).trim();
  } catch {
    return undefined;
  } finally {
    await fs.rmdir(dir).catch(() => {});
  }
}

/** One report through configfs-tsm, following the sequence the guest-components attester uses. */
export async function tsmReport(req: TsmReportRequest): Promise<TsmReport> {
  const fs = req.fs ?? nodeTsmFs;
  const root = req.root ?? TSM_ROOT;
  if (req.inblob.length !== 64) {
    throw new FdeError(`configfs-tsm: report data must be 64 bytes, got ${req.inblob.length}`);
  }
  const dir = entryDir(root);
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (cause) {
      throw new FdeError(`configfs-tsm: cannot ${what} (${(cause as Error).message})`, {
        cause,
        hint: `is ${root} mounted and the ${req.provider} driver loaded (kernel >= 6.7)?`,
      });
    }
  };
  await step(`create ${dir}`, () => fs.mkdir(dir));
  try {
    const provider = decoder
      .decode(await step("read provider", () => fs.readFile(join(dir, "provider"))))
      .trim();
    if (provider !== req.provider) {
      throw new FdeError(`configfs-tsm: provider is "${provider}", expected "${req.provider}"`);
    }
    if (req.privlevel !== undefined) {
      const level = String(req.privlevel);
      await step("write privlevel", () => fs.writeFile(join(dir, "privlevel"), level));
    }
    await step("write inblob", () => fs.writeFile(join(dir, "inblob"), req.inblob));
    const outblob = await step("read outblob", () => fs.readFile(join(dir, "outblob")));
    const auxblob = req.auxblob
      ? await step("read auxblob", () => fs.readFile(join(dir, "auxblob")))
      : undefined;
    const generation = Number(
      decoder.decode(await step("read generation", () => fs.readFile(join(dir, "generation")))).trim(),
    );
    // Each write bumps generation; more than our writes means someone else wrote between our
    // inblob and outblob, so the report may carry their data.
    const expected = req.privlevel === undefined ? 1 : 2;
    if (!(generation <= expected)) {
      throw new FdeError(
        `configfs-tsm: generation is ${generation} (expected ${expected}): concurrent report request`,
      );
    }
    if (outblob.length === 0) throw new FdeError(`configfs-tsm: ${req.provider} returned an empty report`);
    return { outblob, auxblob };
  } finally {
    await fs.rmdir(dir).catch(() => {});
  }
}
