/** What a path is, for errors that refuse a FIFO, device or link where a regular file belongs. */
import type { Stats } from "node:fs";

/** "a FIFO", "a directory", ... ; "a symbolic link" only for lstat results. */
export function describeFileType(st: Stats): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}
