/** dm-verity through veritysetup (format 1, sha256, 4096-byte blocks: cryptsetup's defaults). */
import { run, runText } from "../command.ts";
import { FdeError } from "../errors.ts";

export interface VerityFormat {
  rootHash: string;
  salt: string;
  dataBlocks: number;
  hashBlockSize: number;
}

/** Parse the "Key: value" report veritysetup prints after `format`. */
export function parseVerityFormat(text: string): VerityFormat {
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(text)?.[1];
  const rootHash = field("Root hash");
  if (!rootHash || !/^[0-9a-f]{64}$/.test(rootHash)) {
    throw new FdeError(`veritysetup format printed no sha256 root hash:\n${text}`);
  }
  return {
    rootHash,
    salt: field("Salt") ?? "",
    dataBlocks: Number(field("Data blocks") ?? Number.NaN),
    hashBlockSize: Number(field("Hash block size") ?? Number.NaN),
  };
}

export async function format(dataDevice: string, hashDevice: string): Promise<VerityFormat> {
  const out = await runText("veritysetup", [
    "format",
    "--format=1",
    "--hash=sha256",
    "--data-block-size=4096",
    "--hash-block-size=4096",
    dataDevice,
    hashDevice,
  ]);
  return parseVerityFormat(out);
}

export async function open(
  dataDevice: string,
  name: string,
  hashDevice: string,
  rootHash: string,
): Promise<void> {
  await run("veritysetup", ["open", dataDevice, name, hashDevice, rootHash], {
    hint: "the root hash in metadata.toml does not match the rootfs_hash volume, or the data or hash volume is damaged",
  });
}
