/**
 * The Authenticode PE image digest as UEFI firmware measures it (edk2 Tcg2MeasurePeImage,
 * authenticode-rs): headers without the CheckSum and the certificate-table directory entry, the
 * sections in file order, then trailing data minus the certificate table. No padding to a
 * multiple of 8 (that is what signing tools add; the firmware does not).
 */
import { FdeError } from "../errors.ts";
import { type HashAlgo, newHasher, toHex } from "./hash.ts";
import { parsePe } from "./pe.ts";

/** The byte ranges [start, end) of `file` that the digest covers, in hashing order. */
function authenticodeRanges(file: Uint8Array, what: string): [number, number][] {
  const pe = parsePe(file, what);
  const ranges: [number, number][] = [[0, pe.checksumOffset]];
  if (pe.certDirOffset !== undefined) {
    ranges.push([pe.checksumOffset + 4, pe.certDirOffset], [pe.certDirOffset + 8, pe.sizeOfHeaders]);
  } else {
    ranges.push([pe.checksumOffset + 4, pe.sizeOfHeaders]);
  }
  let sum = pe.sizeOfHeaders;
  const sections = pe.sections
    .filter((s) => s.sizeOfRawData !== 0)
    .sort((a, b) => a.pointerToRawData - b.pointerToRawData);
  for (const s of sections) {
    const end = s.pointerToRawData + s.sizeOfRawData;
    if (end > file.length) {
      throw new FdeError(
        `${what}: section ${s.name} runs past the end of the file; the PE image is truncated or corrupt`,
      );
    }
    ranges.push([s.pointerToRawData, end]);
    sum += s.sizeOfRawData;
  }
  if (file.length < sum + pe.certTable.size) {
    throw new FdeError(
      `${what}: the certificate table does not fit after the sections; the PE image is corrupt`,
    );
  }
  if (file.length - pe.certTable.size > sum) ranges.push([sum, file.length - pe.certTable.size]);
  for (const [a, b] of ranges) {
    if (a > b || b > file.length)
      throw new FdeError(`${what}: PE headers are inconsistent (range ${a}-${b})`);
  }
  return ranges;
}

export function authenticodeDigest(file: Uint8Array, algo: HashAlgo, what: string): string {
  const h = newHasher(algo);
  for (const [a, b] of authenticodeRanges(file, what)) h.update(file.subarray(a, b));
  return toHex(h.digest());
}
