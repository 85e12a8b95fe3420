/**
 * Writing a key to a file named on the command line without handing it to anyone else. The path
 * may point into a directory others can write to (a planted symlink, FIFO or world-readable file)
 * or at a terminal or /dev/stdout: only a file this call creates, or (with force) a regular file of
 * the caller replaced by rename, ever receives the key, and nothing else's mode is changed.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  fchmodSync,
  fsyncSync,
  lstatSync,
  openSync,
  renameSync,
  type Stats,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { FdeError } from "../errors.ts";
import { describeFileType } from "../file-type.ts";

/** Mode of every key file written. */
export const KEY_FILE_MODE = 0o600;

/** open(2) flags for a key file: a new file only, never through a symlink. */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function lstatOrUndefined(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FdeError(`--out ${file}: cannot inspect it: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Refuses a target that must not receive a key: anything but a regular file (symlink, FIFO,
 * device, terminal, directory), an existing file without `force`, and one owned by someone else.
 * Called before the key is fetched (fail early) and again when writing.
 */
export function checkKeyTarget(file: string, force: boolean): void {
  const st = lstatOrUndefined(file);
  if (st === undefined) return;
  if (!st.isFile()) {
    throw new FdeError(`--out ${file} is ${describeFileType(st)}; a key is only written to a regular file`, {
      hint: "name a new file (it is created with mode 0600), or pipe stdout instead",
    });
  }
  if (!force) {
    throw new FdeError(`--out ${file} already exists; it is not overwritten`, {
      hint: "remove it, name a new file, or pass --force to replace a file of your own",
    });
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new FdeError(
      `--out ${file} belongs to uid ${st.uid}, not to you (uid ${uid}); --force only replaces your own file`,
    );
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone; the error being reported is the one that matters.
  }
}

/** Creates `file` (which must not exist) with mode 0600 and writes `key` to disk. */
function createWith(file: string, key: Uint8Array): void {
  let fd: number;
  try {
    fd = openSync(file, CREATE_NEW, KEY_FILE_MODE);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === "EEXIST" ? "it appeared meanwhile" : (cause as Error).message;
    throw new FdeError(`cannot create ${file}: ${why}`, { cause });
  }
  try {
    // Our own new file: the umask may have narrowed the mode; make it exactly 0600.
    fchmodSync(fd, KEY_FILE_MODE);
    writeAll(fd, key);
    fsyncSync(fd);
  } catch (cause) {
    closeSync(fd);
    removeQuietly(file);
    throw new FdeError(`cannot write ${file}: ${(cause as Error).message}`, { cause });
  }
  closeSync(fd);
}

/**
 * Writes `key` to `file`: a new file (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), or with `force`
 * over the caller's own regular file by renaming a new 0600 file in the same directory over it
 * (atomic: the path holds the old file or the whole key, and the old inode's mode is untouched).
 */
export function writeKeyFile(file: string, key: Uint8Array, force: boolean): void {
  checkKeyTarget(file, force);
  if (lstatOrUndefined(file) === undefined) {
    createWith(file, key);
    return;
  }
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  createWith(temp, key);
  try {
    // rename() replaces whatever is at the path now (even a symlink swapped in), never follows it.
    renameSync(temp, file);
  } catch (cause) {
    removeQuietly(temp);
    throw new FdeError(`cannot replace ${file}: ${(cause as Error).message}`, { cause });
  }
  const dir = openSync(dirname(file), constants.O_RDONLY);
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
