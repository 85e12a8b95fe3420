/** disk/blkid.ts: the one blkid runner and parser (convert, volume commands, boot). */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { run } from "../../src/command.ts";
import {
  parseBlkidExport,
  probeSignature,
  probeTags,
  probeType,
  signatureFromExport,
} from "../../src/disk/blkid.ts";

const dir = mkdtempSync(join(tmpdir(), "blkid-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("parsing", () => {
  test("export lines become tags; the signature is TYPE, else a partition table, never atari", () => {
    expect(parseBlkidExport("DEVNAME=/dev/vdb\nUUID=x\nTYPE=ext4\nLABEL=a=b\n")).toEqual({
      DEVNAME: "/dev/vdb",
      UUID: "x",
      TYPE: "ext4",
      LABEL: "a=b",
    });
    expect(signatureFromExport("PTUUID=x\nPTTYPE=gpt\n")).toBe("gpt partition table");
    expect(signatureFromExport("PTTYPE=atari\n")).toBeUndefined();
    expect(signatureFromExport("")).toBeUndefined();
  });
});

describe("probing files", () => {
  test("a filesystem at an offset is found only through its region; nothing found is undefined", async () => {
    const image = join(dir, "disk.img");
    writeFileSync(image, new Uint8Array(0));
    await run("truncate", ["-s", "8M", image]);
    await run("mkfs.ext4", ["-q", "-F", "-L", "root", "-E", "offset=1048576", image, "4M"]);
    expect(await probeTags(image)).toBeUndefined();
    const tags = await probeTags(image, { offset: 1048576, size: 4 * 1048576 });
    expect(tags?.TYPE).toBe("ext4");
    expect(tags?.LABEL).toBe("root");

    const fs = join(dir, "fs.img");
    await run("truncate", ["-s", "4M", fs]);
    await run("mkfs.ext4", ["-q", "-F", fs]);
    expect(await probeType(fs)).toBe("ext4");
    expect(await probeSignature(fs)).toBe("ext4");
    const blank = join(dir, "blank.img");
    await run("truncate", ["-s", "1M", blank]);
    expect(await probeType(blank)).toBeUndefined();
    expect(await probeSignature(blank)).toBeUndefined();
  });
});

test("blkid is run only from disk/blkid.ts", () => {
  const src = join(import.meta.dir, "../../src");
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith(".ts") ? [join(d, e.name)] : [],
    );
  const runners = walk(src)
    .filter((f) => /\brun(?:Text)?\(\s*"blkid"/.test(readFileSync(f, "utf8")))
    .map((f) => relative(src, f));
  expect(runners).toEqual(["disk/blkid.ts"]);
});
