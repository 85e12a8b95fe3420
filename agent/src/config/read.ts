/**
 * Reading a file a user or the host names (a configuration file, an initrd) with a type and size
 * check first: a FIFO, a device such as /dev/zero, or a directory in its place must be a clear
 * error, not a hang or gigabytes of memory.
 */
import { open } from "node:fs/promises";
import { ConfigError } from "../errors.ts";
import { describeFileType, OPEN_TO_INSPECT } from "../file-type.ts";

/**
 * The bytes of the regular file `path`, at most `maxBytes` of them; undefined if it does not exist.
 * `what` says what the file is for in the error ("configuration file", "initrd").
 */
export async function readRegularFile(
  path: string,
  maxBytes: number,
  what: string,
): Promise<Uint8Array | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, OPEN_TO_INSPECT);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw new ConfigError(`${path} is ${describeFileType(st)}, not a regular file; a ${what} must be one`);
    if (st.size > maxBytes) {
      throw new ConfigError(
        `${path} is ${st.size} bytes, larger than the ${maxBytes}-byte limit for a ${what}`,
      );
    }
    // Read at most maxBytes + 1, so a file growing after fstat is still caught.
    const buf = new Uint8Array(st.size + 1);
    let done = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, done, buf.length - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
      if (done === buf.length) {
        throw new ConfigError(`${path} grew while it was read; a ${what} must not change under the reader`);
      }
    }
    return buf.subarray(0, done);
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(`cannot read ${path}: ${(cause as Error).message}`, { cause });
  } finally {
    await handle.close();
  }
}

/**
 * readRegularFile's bytes as text: every file read this way is TOML (a configuration file or
 * bundle), which must be UTF-8; anything else is a ConfigError naming the file, never U+FFFD.
 */
export async function readRegularText(
  path: string,
  maxBytes: number,
  what: string,
): Promise<string | undefined> {
  const bytes = await readRegularFile(path, maxBytes, what);
  if (bytes === undefined) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new ConfigError(`${path} is not valid UTF-8 text; a ${what} is TOML, which must be UTF-8`, {
      cause,
    });
  }
}
