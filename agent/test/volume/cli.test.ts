/**
 * `volume init/show/check/open` on LUKS2 file images, through the real CLI (source, and the
 * compiled binary when built). This host has no device-mapper: luksFormat on a file works, opening
 * does not, so an init with makefs stops after the format and leaves the "initializing" marker,
 * exactly like an interrupted init. Opening and mounting are covered by vm-test/scenarios/volume-*.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { probeSignature } from "../../src/disk/blkid.ts";
import { readSubsystem, SUBSYSTEM_INITIALIZING, SUBSYSTEM_READY } from "../../src/disk/luks.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const BINARY = join(ROOT, "dist/cryptpilot-fde");
const KEY = "volume-test-key";
/** luksFormat benchmarks its KDF: a few seconds per format on a loaded 2-core host. */
const SLOW = 120_000;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], binary = false): Promise<Result> {
  const argv = binary ? [BINARY, ...args] : [BUN, join(ROOT, "agent/src/main.ts"), ...args];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** A config dir with one volume file per entry, each on its own 40 MiB image in the same dir. */
function setup(volumes: Record<string, string>): { dir: string; image: (name: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), "vol-cli-"));
  dirs.push(dir);
  mkdirSync(join(dir, "volumes"));
  const image = (name: string) => join(dir, `${name}.img`);
  for (const [name, body] of Object.entries(volumes)) {
    writeFileSync(image(name), "");
    Bun.spawnSync(["truncate", "-s", "40M", image(name)]);
    writeFileSync(
      join(dir, "volumes", `${name}.toml`),
      `volume = "${name}"\ndev = "${image(name)}"\n${body}`,
    );
  }
  return { dir, image };
}

const EXEC = `[encrypt.exec]\ncommand = "printf"\nargs = ["%s", "${KEY}"]\n`;

async function statusOf(dir: string, name: string): Promise<string> {
  const { stdout, code } = await cli(["-c", dir, "volume", "show", name, "--json"]);
  expect(code).toBe(0);
  return (JSON.parse(stdout) as { status: string }[])[0]!.status;
}

async function run(cmd: string, args: string[]): Promise<void> {
  const proc = Bun.spawn([cmd, ...args], { stdout: "ignore", stderr: "pipe" });
  if ((await proc.exited) !== 0) throw new Error(`${cmd} failed: ${await new Response(proc.stderr).text()}`);
}

describe("volume init on a LUKS2 file image", () => {
  test(
    "blank -> ReadyToOpen; the key from the provider opens the header; a second init is refused",
    async () => {
      const { dir, image } = setup({ data: EXEC });
      expect(await statusOf(dir, "data")).toBe("RequiresInit");
      const init = await cli(["-c", dir, "volume", "init", "data"]);
      expect(init.stderr).toContain("blank device");
      expect(init.code).toBe(0);
      expect(await readSubsystem(image("data"))).toBe(SUBSYSTEM_READY);
      expect(await statusOf(dir, "data")).toBe("ReadyToOpen");
      // The provider's key (and nothing else) unlocks a keyslot; the key never was in argv.
      const proc = Bun.spawn(["cryptsetup", "open", "--test-passphrase", "--key-file=-", image("data")], {
        stdin: new TextEncoder().encode(KEY),
        stderr: "pipe",
      });
      expect(await proc.exited).toBe(0);
      const again = await cli(["-c", dir, "volume", "init", "data"]);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("is already initialised; refusing to overwrite it");
      expect(again.stderr).toContain("--force-reinit");
    },
    SLOW,
  );

  test(
    "key slot KDF: a 32-byte key gets pbkdf2 with 1000 iterations, a short key (passphrase) argon2id",
    async () => {
      const long = "k".repeat(32);
      const { dir, image } = setup({
        long: `[encrypt.exec]\ncommand = "printf"\nargs = ["%s", "${long}"]\n`,
        short: EXEC,
      });
      const init = await cli(["-c", dir, "volume", "init", "long", "short"]);
      expect(init.code).toBe(0);
      const dump = async (name: string) => {
        const proc = Bun.spawn(["cryptsetup", "luksDump", image(name)], { stdout: "pipe" });
        return new Response(proc.stdout).text();
      };
      const longDump = await dump("long");
      expect(longDump).toMatch(/PBKDF:\s+pbkdf2/);
      expect(longDump).toMatch(/Iterations:\s+1000\n/);
      expect(await dump("short")).toMatch(/PBKDF:\s+argon2id/);
    },
    SLOW,
  );

  test(
    "interrupted init (makefs needs dm, missing here) leaves Initializing, and init retries it without --force-reinit",
    async () => {
      const { dir, image } = setup({ data: `makefs = "ext4"\n${EXEC}` });
      const first = await cli(["-c", dir, "volume", "init", "data"]);
      expect(first.code).toBe(1);
      expect(await readSubsystem(image("data"))).toBe(SUBSYSTEM_INITIALIZING);
      expect(await statusOf(dir, "data")).toBe("Initializing");
      const retry = await cli(["-c", dir, "volume", "init", "data"]);
      expect(retry.stderr).toContain("a previous initialisation was interrupted; starting it again");
      expect(retry.stderr).not.toContain("refusing");
      expect(await readSubsystem(image("data"))).toBe(SUBSYSTEM_INITIALIZING);
      // open never formats: it refuses the unfinished volume.
      const open = await cli(["-c", dir, "volume", "open", "data"]);
      expect(open.code).toBe(1);
      expect(open.stderr).toContain("was interrupted; run 'volume init' again");
    },
    SLOW,
  );

  test(
    "a device holding data (ext4, a partition table, a foreign LUKS header) is refused untouched; --force-reinit overwrites",
    async () => {
      const { dir, image } = setup({ fs: EXEC, pt: EXEC, luks: EXEC });
      await run("mkfs.ext4", ["-q", "-F", image("fs")]);
      Bun.spawnSync(["sfdisk", "-q", image("pt")], { stdin: new TextEncoder().encode("label: gpt\n,\n") });
      const luks = Bun.spawn(
        [
          "cryptsetup",
          "luksFormat",
          "--batch-mode",
          "--type",
          "luks2",
          "--pbkdf",
          "pbkdf2",
          "--key-file=-",
          image("luks"),
        ],
        { stdin: new TextEncoder().encode("other"), stderr: "pipe" },
      );
      expect(await luks.exited).toBe(0);
      const before = readFileSync(image("fs"));
      for (const [name, found] of [
        ["fs", "ext4"],
        ["pt", "gpt partition table"],
        ["luks", "crypto_LUKS"],
      ] as const) {
        const refused = await cli(["-c", dir, "volume", "init", name]);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`holds data: blkid finds ${found} on it; refusing to overwrite it`);
        expect(await statusOf(dir, name)).toBe("RequiresInit");
      }
      expect(readFileSync(image("fs")).equals(before)).toBe(true);
      const forced = await cli(["-c", dir, "volume", "init", "fs", "--force-reinit"]);
      expect(forced.code).toBe(0);
      expect(await probeSignature(image("fs"))).toBe("crypto_LUKS");
      expect(await statusOf(dir, "fs")).toBe("ReadyToOpen");
    },
    SLOW,
  );

  test(
    "otp: ready on a blank device, refused on foreign data (open and status), claimed by init --force-reinit",
    async () => {
      const { dir, image } = setup({
        scratch: `makefs = "swap"\n[mount]\nmountpoint = "swap"\n[encrypt.otp]\n`,
      });
      expect(await statusOf(dir, "scratch")).toBe("ReadyToOpen");
      await run("mkfs.ext4", ["-q", "-F", image("scratch")]);
      expect(await statusOf(dir, "scratch")).toBe("RequiresInit");
      const open = await cli(["-c", dir, "volume", "open", "scratch"]);
      expect(open.code).toBe(1);
      expect(open.stderr).toContain("an otp volume would overwrite it on every open");
      expect(await probeSignature(image("scratch"))).toBe("ext4");
      const claim = await cli(["-c", dir, "volume", "init", "scratch", "--force-reinit"]);
      expect(claim.code).toBe(0);
      expect(claim.stdout).toContain("claimed");
      expect(await readSubsystem(image("scratch"))).toBe(SUBSYSTEM_READY);
      expect(await statusOf(dir, "scratch")).toBe("ReadyToOpen");
      // A random in-memory key needs no slow, memory-hard KDF (seconds and 1 GiB per open in a VM).
      const dump = Bun.spawnSync(["cryptsetup", "luksDump", image("scratch")]).stdout.toString();
      expect(dump).toMatch(/PBKDF:\s+pbkdf2/);
      expect(dump).toMatch(/Iterations:\s+1000$/m);
    },
    SLOW,
  );
});

describe("volume show / check / usage", () => {
  const body = {
    a: `auto_open = true\nopen_in_initrd = true\nmakefs = "ext4"\n[mount]\nmountpoint = "/mnt/a"\n${EXEC}`,
    b: `[encrypt.otp]\n`,
  };

  for (const binary of [false, true]) {
    const where = binary ? "compiled binary" : "source";
    test.skipIf(binary && !existsSync(BINARY))(`show table and --json (${where})`, async () => {
      const { dir, image } = setup(body);
      rmSync(image("b"));
      const table = await cli(["-c", dir, "volume", "show"], binary);
      expect(table.code).toBe(0);
      const lines = table.stdout.split("\n");
      expect(lines[0]).toMatch(/^VOLUME\s+DEVICE\s+PROVIDER\s+STATUS\s+AUTO-OPEN\s+MOUNT$/);
      expect(lines[1]).toMatch(
        new RegExp(`^a\\s+${image("a")}\\s+exec\\s+RequiresInit\\s+initrd\\s+/mnt/a$`),
      );
      expect(lines[2]).toMatch(new RegExp(`^b\\s+${image("b")}\\s+otp\\s+DeviceNotFound\\s+no\\s+-$`));
      expect(table.stdout).toContain(`b: ${image("b")} does not exist`);
      const json = JSON.parse((await cli(["-c", dir, "volume", "show", "--json"], binary)).stdout);
      expect(json).toEqual([
        {
          volume: "a",
          volume_path: "/dev/mapper/a",
          underlay_device: image("a"),
          key_provider: "exec",
          extra_options: { auto_open: true, open_in_initrd: true, makefs: "ext4", integrity: false },
          status: "RequiresInit",
          description: "blank device; run 'volume init'",
          config_file: join(dir, "volumes", "a.toml"),
          mount: { mountpoint: "/mnt/a", options: "defaults" },
        },
        {
          volume: "b",
          volume_path: "/dev/mapper/b",
          underlay_device: image("b"),
          key_provider: "otp",
          extra_options: { auto_open: false, integrity: false },
          status: "DeviceNotFound",
          description: `${image("b")} does not exist`,
          config_file: join(dir, "volumes", "b.toml"),
        },
      ]);
      // The key never shows up.
      expect(JSON.stringify(json)).not.toContain(KEY);
    });
  }

  test("check fetches each key (never printing it); a failing provider exits 1, a bad file 2", async () => {
    const { dir } = setup(body);
    const ok = await cli(["-c", dir, "volume", "check"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("volume a (");
    expect(ok.stdout).toContain("key fetched from exec printf");
    expect(ok.stdout + ok.stderr).not.toContain(KEY);
    writeFileSync(
      join(dir, "volumes", "c.toml"),
      `volume = "c"\ndev = "/dev/x"\n[encrypt.exec]\ncommand = "false"\n`,
    );
    const keyFail = await cli(["-c", dir, "volume", "check", "--keep-checking"]);
    expect(keyFail.code).toBe(1);
    expect(keyFail.stderr).toContain("exited with code 1");
    expect((await cli(["-c", dir, "volume", "check", "--skip-check-passphrase"])).code).toBe(0);
    writeFileSync(
      join(dir, "volumes", "d.toml"),
      `volume = "d"\ndev = "/dev/x"\nmakefs = "zfs"\n[encrypt.otp]\n`,
    );
    const bad = await cli(["-c", dir, "volume", "check", "--skip-check-passphrase"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("d.toml line 3: makefs:");
  });

  test("config check covers the volumes too (same flags, same exit codes)", async () => {
    const { dir } = setup(body);
    const ok = await cli(["-c", dir, "config", "check"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("volume a (");
    expect(ok.stdout).toContain("volume b (");
    writeFileSync(join(dir, "volumes", "d.toml"), `volume = "a"\ndev = "/dev/x"\n[encrypt.otp]\n`);
    const dup = await cli(["-c", dir, "config", "check", "--skip-check-passphrase"]);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain(
      `d.toml line 1: volume: volume 'a' is already defined in ${join(dir, "volumes", "a.toml")}`,
    );
  });

  test("open --auto: a bad file and a failing volume are reported, the exit code says so", async () => {
    const { dir, image } = setup({ a: `auto_open = true\n${EXEC}`, m: `${EXEC}` });
    writeFileSync(join(dir, "volumes", "bad.toml"), "volume = 1\n");
    const result = await cli(["-c", dir, "volume", "open", "--auto"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("skipping an invalid volume file");
    expect(result.stdout).toContain("not auto-opened (auto_open = false): m");
    expect(result.stderr).toContain(`volume a: ${image("a")} is not an initialised cryptpilot volume`);
  });

  test("open --auto --initrd: only open_in_initrd volumes; config check names a bad open_in_initrd", async () => {
    const { dir, image } = setup({
      a: `auto_open = true\n${EXEC}`,
      early: `auto_open = true\nopen_in_initrd = true\n${EXEC}`,
    });
    const result = await cli(["-c", dir, "volume", "open", "--auto", "--initrd"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("not opened in the initrd (open_in_initrd = false): a");
    expect(result.stderr).toContain(
      `volume early: ${image("early")} is not an initialised cryptpilot volume`,
    );
    expect(result.stderr).not.toContain("volume a:");
    writeFileSync(
      join(dir, "volumes", "early.toml"),
      `volume = "early"\ndev = "/dev/x"\nopen_in_initrd = true\n${EXEC}`,
    );
    const bad = await cli(["-c", dir, "config", "check", "--skip-check-passphrase"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      "early.toml line 3: open_in_initrd: open_in_initrd = true needs auto_open = true",
    );
    expect((await cli(["-c", dir, "volume", "open", "a", "--initrd"])).code).toBe(2);
  });

  test("usage errors exit 2", async () => {
    const { dir } = setup({ a: EXEC });
    expect((await cli(["-c", dir, "volume", "open"])).code).toBe(2);
    expect((await cli(["-c", dir, "volume", "open", "a", "--auto"])).code).toBe(2);
    expect((await cli(["-c", dir, "volume", "init"])).code).toBe(2);
    const unknown = await cli(["-c", dir, "volume", "close", "zz"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no volume 'zz'");
  });
});
