/** metadata.toml: written by `convert`, read in the initrd to open dm-verity on the rootfs. */
import * as v from "valibot";

export interface Metadata {
  type: 1;
  /** dm-verity root hash, lower-case hex. */
  rootHash: string;
}

export const MetadataSchema = v.pipe(
  v.strictObject({
    type: v.pipe(
      v.number(),
      v.value(
        1,
        "unsupported metadata format; this build reads type = 1 (was the disk converted by a newer version?)",
      ),
    ),
    root_hash: v.pipe(
      v.string(),
      v.regex(/^(?:[0-9a-fA-F]{2})+$/, "must be a hex string (the dm-verity root hash)"),
    ),
  }),
  v.transform((t): Metadata => ({ type: 1, rootHash: t.root_hash.toLowerCase() })),
);
