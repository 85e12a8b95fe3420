/** Open a disk image or block device as a BlockSource, recognising qcow2 by its magic. */
import { FdeError } from "../../errors.ts";
import { QCOW2_MAGIC, Qcow2Source } from "./qcow2.ts";
import { type BlockSource, be32, FileSource } from "./source.ts";

/** `format` is a qcow2 backing-format name ("raw", "qcow2") when known; otherwise the magic decides. */
export function openImage(path: string, format?: string): BlockSource {
  const file = new FileSource(path);
  try {
    const isQcow2 = file.size >= 4 && be32(file.read(0, 4), 0) === QCOW2_MAGIC;
    if (format === "qcow2" || (format === undefined && isQcow2))
      return new Qcow2Source(path, file, openImage);
    if (format !== undefined && format !== "raw") {
      throw new FdeError(`${path}: image format '${format}' is not supported (only raw and qcow2)`);
    }
    return file;
  } catch (err) {
    file.close();
    throw err;
  }
}
