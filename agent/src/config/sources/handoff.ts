/**
 * The first boot stage's choice, handed to the later one so user data is fetched and measured
 * once: the bundle text as received (the bytes that were measured), root-only in /run, which
 * lives in the TEE's memory. No file: the initrd's configuration was chosen.
 */
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type ParsedBundle, readBundle } from "../bundle.ts";
import { readRegularText } from "../read.ts";
import { CONFIG_MAX_BYTES } from "../toml.ts";

/** Directory of the handoff (mode 0700); under the boot stages' /run/cryptpilot. */
export const HANDOFF_DIR = "/run/cryptpilot/config";
/** The user-data bundle the first stage measured and used (mode 0600). */
export const HANDOFF_FILE = "user-data.toml";

/** Record the choice: the user-data bundle, or (undefined) none, removing an older record. */
export async function writeHandoff(
  userDataText: string | undefined,
  dir: string = HANDOFF_DIR,
): Promise<void> {
  const file = join(dir, HANDOFF_FILE);
  if (userDataText === undefined) {
    await rm(file, { force: true });
    return;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  // "wx": a file already at the temporary name is an error, not something to write through.
  await writeFile(tmp, userDataText, { mode: 0o600, flag: "wx" });
  await rename(tmp, file);
}

/** The bundle the first stage used, or undefined when it used the initrd's configuration. */
export async function readHandoff(dir: string = HANDOFF_DIR): Promise<ParsedBundle | undefined> {
  const file = join(dir, HANDOFF_FILE);
  const text = await readRegularText(file, CONFIG_MAX_BYTES, "configuration bundle");
  return text === undefined ? undefined : readBundle(file, text);
}
