/** Running the real tools in test set-ups (sfdisk, mkfs.*, mtools, qemu-img, cryptsetup, LVM). */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Runs `cmd` (with `input` on stdin) and returns its stdout; throws with its stderr when it fails. */
export function sh(cmd: string[], input?: string): string {
  const p = Bun.spawnSync(cmd, {
    stdin: input === undefined ? "ignore" : Buffer.from(input),
    stderr: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${p.exitCode}): ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** A fresh directory under the system temp dir, named after `prefix`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `cpfde-${prefix}-`));
}
