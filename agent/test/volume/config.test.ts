/** Volume files: the schema, defaults, the loader's directory rules, and every shipped template. */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigFileError } from "../../src/config/index.ts";
import { checkVolumes, loadVolume, loadVolumes } from "../../src/config/volume.ts";
import { ConfigError } from "../../src/errors.ts";
import { configDirMaker } from "../../testkit/harness.ts";

const TEMPLATES = resolve(import.meta.dir, "../../../docs/volume-templates");

/** A config directory whose volumes/ holds the given files. */
const configDir = configDirMaker("vol-cfg-", "volumes");
/** A config directory without volumes/. */
const bareConfigDir = configDirMaker("vol-none-");

const OTP = `volume = "scratch"\ndev = "/dev/vdb"\n[encrypt.otp]\n`;

async function issuesOf(text: string) {
  const { issues } = await checkVolumes(configDir({ "v.toml": text }));
  expect(issues.length).toBeGreaterThan(0);
  return issues;
}

describe("volume files", () => {
  test("no volumes directory: no volumes", async () => {
    expect(await loadVolumes(bareConfigDir({}))).toEqual([]);
  });

  test("defaults: auto_open and integrity off, no makefs, no mount", async () => {
    const dir = configDir({ "s.toml": OTP });
    expect(await loadVolumes(dir)).toEqual([
      {
        file: join(dir, "volumes", "s.toml"),
        volume: "scratch",
        dev: "/dev/vdb",
        autoOpen: false,
        openInInitrd: false,
        integrity: false,
        encrypt: { type: "otp" },
      },
    ]);
  });

  test("every field, otp for swap with a swap mount", async () => {
    const [vol] = await loadVolumes(
      configDir({
        "swap.toml": `volume = "swap0"\ndev = "/dev/vdc"\nauto_open = true\nmakefs = "swap"\nintegrity = true\n[mount]\nmountpoint = "swap"\n[encrypt.otp]\n`,
      }),
    );
    expect(vol).toMatchObject({
      volume: "swap0",
      autoOpen: true,
      makefs: "swap",
      integrity: true,
      mount: { mountpoint: "swap", options: "defaults" },
    });
  });

  test("open_in_initrd: with auto_open it loads, without it the file is refused naming the field", async () => {
    const [vol] = await loadVolumes(
      configDir({
        "v.toml": `volume = "var"\ndev = "/dev/vdd"\nauto_open = true\nopen_in_initrd = true\n[encrypt.otp]\n`,
      }),
    );
    expect(vol).toMatchObject({ volume: "var", autoOpen: true, openInInitrd: true });
    const [issue] = await issuesOf(
      `volume = "var"\ndev = "/dev/vdd"\nopen_in_initrd = true\n[encrypt.otp]\n`,
    );
    expect(issue).toMatchObject({ line: 3, field: "open_in_initrd" });
    expect(issue!.message).toContain("needs auto_open = true");
    const [typo] = await issuesOf(
      `volume = "var"\ndev = "/dev/vdd"\nopen_in_initrd = "yes"\n[encrypt.otp]\n`,
    );
    expect(typo).toMatchObject({ line: 3, field: "open_in_initrd" });
  });

  test("upstream's example files load unchanged (kbs documented names, oidc with [encrypt.oidc.kms])", async () => {
    const volumes = await loadVolumes(
      configDir({
        "data.toml": `volume = "data"\ndev = "/dev/nvme1n1p2"\nauto_open = true\nmakefs = "ext4"\nintegrity = true\n\n[encrypt.kbs]\nurl = "https://kbs.example.com"\nresource_path = "/secrets/data-key"\n`,
        "data5.toml": `volume = "data5"\ndev = "/dev/nvme1n1p6"\n[encrypt.oidc]\ncommand = "some-cli"\nargs = ["get-token"]\nkey_id = "disk-decryption-key"\n[encrypt.oidc.kms]\ntype = "aliyun"\noidc_provider_arn = "arn"\nrole_arn = "role"\nregion_id = "cn-beijing"\n`,
      }),
    );
    expect(volumes.map((v) => [v.volume, v.encrypt.type])).toEqual([
      ["data", "kbs"],
      ["data5", "oidc"],
    ]);
    expect(volumes[0]!.encrypt).toMatchObject({
      url: "https://kbs.example.com",
      resourcePath: "secrets/data-key",
    });
  });

  test("only *.toml files count; volumes are sorted by name", async () => {
    const volumes = await loadVolumes(
      configDir({
        "z.toml": OTP.replace("scratch", "aaa"),
        "a.toml": OTP.replace("scratch", "bbb"),
        "notes.txt": "not a volume",
        "old.toml.bak": "garbage",
      }),
    );
    expect(volumes.map((v) => v.volume)).toEqual(["aaa", "bbb"]);
  });

  test("unknown field, bad makefs, relative dev: one issue each, with line numbers", async () => {
    const issues = await issuesOf(
      `volume = "v"\ndev = "vdb"\nmakefs = "btrfs"\nauto_mount = true\n[encrypt.otp]\n`,
    );
    const byField = Object.fromEntries(issues.map((i) => [i.field, i]));
    expect(byField.dev).toMatchObject({ line: 2 });
    expect(byField.makefs).toMatchObject({ line: 3 });
    expect(byField.auto_mount!.message).toContain("unknown field");
  });

  test("missing encrypt table, two providers, unknown provider", async () => {
    expect((await issuesOf(`volume = "v"\ndev = "/dev/vdb"\n`))[0]!.field).toBe("encrypt");
    const two = await issuesOf(`volume = "v"\ndev = "/dev/vdb"\n[encrypt.otp]\n[encrypt.tpm2]\n`);
    expect(two[0]!.message).toContain("exactly one");
    const unknown = await issuesOf(`volume = "v"\ndev = "/dev/vdb"\n[encrypt.luks]\n`);
    expect(unknown[0]!.message).toContain("unknown key provider 'luks'");
  });

  test("names the FDE boot path uses and names dm refuses are rejected", async () => {
    for (const name of ["rootfs", "delta", "rootfs_verity", "cryptpilot-x", "a/b", "-x", ""]) {
      const issues = await issuesOf(OTP.replace('"scratch"', JSON.stringify(name)));
      expect(issues[0]!.field).toBe("volume");
    }
  });

  test("mount: swap only for makefs swap, directories absolute and not /", async () => {
    const base = `volume = "v"\ndev = "/dev/vdb"\n`;
    const cases = [
      `${base}makefs = "ext4"\n[mount]\nmountpoint = "swap"\n[encrypt.otp]\n`,
      `${base}makefs = "swap"\n[mount]\nmountpoint = "/mnt/x"\n[encrypt.otp]\n`,
      `${base}[mount]\nmountpoint = "mnt"\n[encrypt.otp]\n`,
      `${base}[mount]\nmountpoint = "/"\n[encrypt.otp]\n`,
      `${base}[mount]\nmountpoint = "/mnt/../etc"\n[encrypt.otp]\n`,
      `${base}[mount]\nmountpoint = "/mnt/x"\noptions = "a, b"\n[encrypt.otp]\n`,
    ];
    for (const text of cases) expect((await issuesOf(text))[0]!.field).toStartWith("mount");
  });

  test("two files naming the same volume: the second is reported with both files", async () => {
    const dir = configDir({ "a.toml": OTP, "b.toml": OTP.replace("/dev/vdb", "/dev/vdc") });
    const { volumes, issues } = await checkVolumes(dir);
    expect(volumes.map((v) => v.dev)).toEqual(["/dev/vdb"]);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: join(dir, "volumes", "b.toml"), field: "volume", line: 1 });
    expect(issues[0]!.message).toContain(join(dir, "volumes", "a.toml"));
    await expect(loadVolumes(dir)).rejects.toBeInstanceOf(ConfigFileError);
  });

  test("one bad file does not hide the good ones (checkVolumes), but loadVolumes refuses", async () => {
    const dir = configDir({ "good.toml": OTP, "bad.toml": "volume = [" });
    const { volumes, issues } = await checkVolumes(dir);
    expect(volumes.map((v) => v.volume)).toEqual(["scratch"]);
    expect(issues[0]!.message).toContain("invalid TOML");
    const err = await loadVolumes(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
  });

  test("loadVolume of an unknown name lists the configured ones", async () => {
    const err = await loadVolume(configDir({ "s.toml": OTP }), "nope").catch((e: unknown) => e);
    expect((err as Error).message).toContain("configured: scratch");
  });
});

describe("templates in docs/volume-templates", () => {
  const files = readdirSync(TEMPLATES).filter((f) => f.endsWith(".toml"));

  test("one per provider", () => {
    expect(files.sort()).toEqual(["exec.toml", "kbs.toml", "kms.toml", "oidc.toml", "otp.toml", "tpm2.toml"]);
  });

  for (const file of files) {
    test(`${file} loads with the real loader and uses its provider`, async () => {
      const [vol] = await loadVolumes(configDir({ [file]: readFileSync(join(TEMPLATES, file), "utf8") }));
      expect(`${vol!.encrypt.type}.toml`).toBe(file);
      expect(vol!.mount?.mountpoint).toStartWith("/mnt/");
    });
  }
});
