/**
 * The files convert installs into the guest. The dracut module and hooks are read from the
 * source tree (placeholder until the embedded list lands); the agent is this executable.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { FdeError } from "../errors.ts";
import type { Assets } from "./guest.ts";

const repoRoot = join(import.meta.dir, "../../..");

/** True inside a `bun build --compile` executable (its modules live under /$bunfs/). */
const compiled = import.meta.dir.startsWith("/$bunfs");

export async function loadAssets(): Promise<Assets> {
  const moduleFiles: Record<string, string> = {};
  for (const dir of ["dracut-module/91cryptpilot", "hooks"]) {
    const full = join(repoRoot, dir);
    for (const name of await readdir(full)) moduleFiles[name] = await readFile(join(full, name), "utf8");
  }
  const agentBinary = compiled ? process.execPath : join(repoRoot, "dist/cryptpilot-fde");
  if (!existsSync(agentBinary)) {
    throw new FdeError(`${agentBinary} does not exist: convert installs the compiled agent into the guest`, {
      hint: "run 'make build' first",
    });
  }
  return { moduleFiles, agentBinary };
}
