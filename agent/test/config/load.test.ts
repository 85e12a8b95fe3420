import { describe, expect, test } from "bun:test";
import { DEFAULT_GLOBAL } from "../../src/config/fde.ts";
import { ConfigFileError, type ConfigIssue, loadConfig, loadMetadata } from "../../src/config/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { configDirMaker } from "../../testkit/harness.ts";

/** A config directory holding the given files. */
const configDir = configDirMaker("cfg-");

const EXEC_DELTA = `
[delta.encrypt.exec]
command = "printf"
args = ["k"]
`;

async function issuesOf(files: Record<string, string>): Promise<ConfigIssue[]> {
  try {
    await loadConfig(configDir(files));
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigFileError);
    expect((err as ConfigError).exitCode).toBe(2);
    return (err as ConfigFileError).issues;
  }
  throw new Error("the config loaded but should have been rejected");
}

async function fdeOf(text: string) {
  const { fde } = await loadConfig(configDir({ "fde.toml": text }));
  if (!fde) throw new Error("no fde config");
  return fde;
}

describe("fde.toml", () => {
  test("no fde.toml: not an FDE system; no global.toml: defaults", async () => {
    expect(await loadConfig(configDir({}))).toEqual({ global: DEFAULT_GLOBAL });
  });

  test("defaults: delta_location disk, dm-snapshot, no rootfs encryption, integrity off", async () => {
    expect(await fdeOf(`[rootfs]\n[delta]\n${EXEC_DELTA}`)).toEqual({
      rootfs: { deltaLocation: "disk", deltaBackend: "dm-snapshot" },
      delta: {
        integrity: false,
        encrypt: { type: "exec", command: "printf", args: ["k"], timeoutMs: 30_000 },
      },
    });
  });

  test("upstream's template (kbs one-shot with root cert) loads", async () => {
    const fde = await fdeOf(`
[rootfs]
delta_location = "disk-persist"
delta_backend = "overlayfs"

[rootfs.encrypt.kbs]
cdh_type = "one-shot"
kbs_url = "https://1.2.3.4:8080"
kbs_root_cert = """
-----BEGIN CERTIFICATE-----
XXXX
-----END CERTIFICATE-----
"""
key_uri = "kbs:///default/mykey/rootfs_partition"

[delta]
integrity = true

[delta.encrypt.kbs]
kbs_url = "https://1.2.3.4:8080/"
key_uri = "kbs:///default/mykey/data_partition"
`);
    expect(fde.rootfs.deltaLocation).toBe("disk-persist");
    expect(fde.rootfs.deltaBackend).toBe("overlayfs");
    expect(fde.rootfs.encrypt).toMatchObject({
      type: "kbs",
      cdhType: "one-shot",
      url: "https://1.2.3.4:8080",
      resourcePath: "default/mykey/rootfs_partition",
    });
    expect(fde.delta).toMatchObject({ integrity: true, encrypt: { url: "https://1.2.3.4:8080" } });
  });

  test("upstream aliases: [data] for [delta], rw_overlay for delta_location", async () => {
    const fde = await fdeOf(
      `[rootfs]\nrw_overlay = "ram"\n[data]\nintegrity = true\n${EXEC_DELTA.replace("delta", "data")}`,
    );
    expect(fde.rootfs.deltaLocation).toBe("ram");
    expect(fde.delta.integrity).toBe(true);
  });

  const invalid: [string, string, Partial<ConfigIssue>][] = [
    ["empty file", "", { field: "rootfs", message: "missing required field" }],
    [
      "missing [delta]",
      "[rootfs]\n",
      { message: expect.stringContaining("missing the [delta] table") as never },
    ],
    [
      "bad delta_location",
      `[rootfs]\ndelta_location = "tmpfs"\n${EXEC_DELTA}`,
      {
        line: 2,
        field: "rootfs.delta_location",
        message: 'expected ("disk" | "disk-persist" | "ram"), got "tmpfs"',
      },
    ],
    [
      "wrong type",
      `[rootfs]\n[delta]\nintegrity = "yes"\n${EXEC_DELTA}`,
      { line: 3, field: "delta.integrity", message: 'expected boolean, got "yes"' },
    ],
    [
      "unknown field",
      `[rootfs]\ndelta_size = 3\n${EXEC_DELTA}`,
      {
        line: 2,
        field: "rootfs.delta_size",
        message:
          "unknown field 'delta_size'; the fields here are: delta_location, rw_overlay, delta_backend, encrypt",
      },
    ],
    [
      "unknown top-level table",
      `[rootfs]\n[extra]\n${EXEC_DELTA}`,
      { line: 2, field: "extra", message: expect.stringContaining("unknown field") as never },
    ],
    [
      "both delta and data",
      `[rootfs]\n${EXEC_DELTA}${EXEC_DELTA.replace("delta", "data")}`,
      { field: "data", message: expect.stringContaining("old name for [delta]") as never },
    ],
    [
      "both rw_overlay and delta_location",
      `[rootfs]\ndelta_location = "ram"\nrw_overlay = "ram"\n${EXEC_DELTA}`,
      { line: 3, field: "rootfs.rw_overlay" },
    ],
    [
      "delta without encrypt",
      "[rootfs]\n[delta]\nintegrity = true\n",
      { line: 2, field: "delta.encrypt", message: "missing required field" },
    ],
    [
      "two providers in one table",
      `[rootfs]\n${EXEC_DELTA}[delta.encrypt.otp]\n`,
      { line: 3, field: "delta.encrypt", message: "has 2 key providers (exec, otp); exactly one is allowed" },
    ],
    [
      "empty encrypt table",
      "[rootfs]\n[delta.encrypt]\n",
      {
        line: 2,
        field: "delta.encrypt",
        message: expect.stringContaining("needs one key provider") as never,
      },
    ],
    [
      "unknown provider",
      "[rootfs]\n[delta.encrypt.vault]\nurl = 'x'\n",
      {
        line: 2,
        field: "delta.encrypt.vault",
        message: expect.stringContaining("unknown key provider 'vault'") as never,
      },
    ],
    [
      "otp for the rootfs",
      `[rootfs.encrypt.otp]\n${EXEC_DELTA}`,
      {
        line: 1,
        field: "rootfs.encrypt",
        message: expect.stringContaining("does not survive a reboot") as never,
      },
    ],
    [
      "otp for delta",
      "[rootfs]\n[delta.encrypt.otp]\n",
      {
        line: 2,
        field: "delta.encrypt",
        message: expect.stringContaining("does not survive a reboot") as never,
      },
    ],
    [
      "bad TOML syntax",
      "[rootfs]\ndelta_location = = 'x'\n",
      { line: 2, message: expect.stringContaining("invalid TOML") as never },
    ],
  ];
  for (const [name, text, expected] of invalid) {
    test(`rejected: ${name}`, async () => {
      const [first] = await issuesOf({ "fde.toml": text });
      expect(first).toMatchObject({ file: expect.stringMatching(/fde\.toml$/) as never, ...expected });
    });
  }

  test("all problems in a file are collected, each with its line", async () => {
    const issues = await issuesOf({
      "fde.toml": `[rootfs]\ndelta_location = 1\ndelta_backend = "zfs"\n[delta]\nintegrity = 2\n${EXEC_DELTA}`,
    });
    expect(issues.map((i) => [i.line, i.field])).toEqual([
      [2, "rootfs.delta_location"],
      [3, "rootfs.delta_backend"],
      [5, "delta.integrity"],
    ]);
  });

  test("the thrown message names file, line and field in one paragraph", async () => {
    const dir = configDir({ "fde.toml": `[rootfs]\ndelta_location = "tmpfs"\n${EXEC_DELTA}` });
    const err = await loadConfig(dir).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      `${dir}/fde.toml line 2: rootfs.delta_location: expected ("disk" | "disk-persist" | "ram"), got "tmpfs"`,
    );
  });
});

describe("global.toml", () => {
  test("empty file, empty [boot] and verbose = true", async () => {
    const load = async (text: string) => (await loadConfig(configDir({ "global.toml": text }))).global;
    expect(await load("")).toEqual(DEFAULT_GLOBAL);
    expect(await load("[boot]\n")).toEqual(DEFAULT_GLOBAL);
    expect(await load("[boot]\nverbose = true\n")).toEqual({
      boot: { ...DEFAULT_GLOBAL.boot, verbose: true },
    });
  });

  test("rejected: unknown field and wrong type", async () => {
    expect((await issuesOf({ "global.toml": "[boot]\nverbos = true\n" }))[0]).toMatchObject({
      line: 2,
      field: "boot.verbos",
    });
    expect((await issuesOf({ "global.toml": "[boot]\nverbose = 1\n" }))[0]).toMatchObject({
      line: 2,
      field: "boot.verbose",
      message: "expected boolean, got 1",
    });
  });
});

describe("metadata.toml", () => {
  const HASH = "A1b2".repeat(16);
  test("type 1 and root_hash, lower-cased", async () => {
    const dir = configDir({ "metadata.toml": `type = 1\nroot_hash = "${HASH}"\n` });
    expect(await loadMetadata(dir)).toEqual({ type: 1, rootHash: HASH.toLowerCase() });
  });

  test("missing file says who writes it", async () => {
    const err = await loadMetadata(configDir({})).catch((e: ConfigError) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).hint).toContain("convert");
  });

  const bad: [string, string, Partial<ConfigIssue>][] = [
    ["type 2", `type = 2\nroot_hash = "${HASH}"\n`, { line: 1, field: "type" }],
    ["non-hex hash", 'type = 1\nroot_hash = "xyz0"\n', { line: 2, field: "root_hash" }],
    ["odd-length hash", 'type = 1\nroot_hash = "abc"\n', { line: 2, field: "root_hash" }],
    ["missing hash", "type = 1\n", { field: "root_hash", message: "missing required field" }],
    ["unknown field", `type = 1\nroot_hash = "${HASH}"\nsalt = "00"\n`, { line: 3, field: "salt" }],
  ];
  for (const [name, text, expected] of bad) {
    test(`rejected: ${name}`, async () => {
      const err = await loadMetadata(configDir({ "metadata.toml": text })).catch((e: ConfigFileError) => e);
      expect(err).toBeInstanceOf(ConfigFileError);
      expect((err as ConfigFileError).issues[0]).toMatchObject(expected);
    });
  }
});
