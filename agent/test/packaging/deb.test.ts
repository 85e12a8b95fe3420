/**
 * The Debian package (packaging/build-deb.sh, `make deb`): built from dist/cryptpilot-fde into a
 * temp dir (uncompressed, for speed), then checked with dpkg-deb (file list, modes, symlinks,
 * control fields, conffiles), its templates with the agent's own config check, its
 * cryptpilot-crypt name with the compiled agent, and an install / upgrade / purge into a scratch
 * root with `dpkg --root` (maintainer scripts chrootless, as image pipelines run them): purge
 * leaves exactly the files that were there before. Skipped, saying why, without the tools.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join, relative, resolve } from "node:path";
import pkg from "../../../package.json" with { type: "json" };
import { PROVIDER_TYPES } from "../../src/config/providers/index.ts";
import { MODULE_FILES } from "../../src/convert/assets.ts";
import { sh, tempDir } from "../../testkit/sh.ts";

const TOP = resolve(import.meta.dir, "../../..");
const BIN = join(TOP, "dist/cryptpilot-fde");
const MAIN = join(TOP, "agent/src/main.ts");
const MODULE_DIR = "usr/lib/dracut/modules.d/91cryptpilot";

const missing = ["dpkg-deb", "help2man"].filter((t) => Bun.which(t) === null);
const why = !existsSync(BIN)
  ? `${BIN} not built (make build)`
  : missing.length > 0
    ? `${missing.join(", ")} not installed (.ci/apt-packages)`
    : undefined;
if (why) console.warn(`skipping the Debian package tests: ${why}`);
if (!why && Bun.which("lintian") === null) console.warn("skipping the lintian test: lintian not installed");
const isRoot = process.getuid?.() === 0;
if (!why && !isRoot) console.warn("skipping the dpkg --root install test: needs root");

let dir: string;
let deb: string;

/** Builds the package of VERSION into OUT (no compression: the contents are what is tested). */
function build(version: string, out: string): string {
  const r = Bun.spawnSync(
    [
      join(TOP, "packaging/build-deb.sh"),
      "--bin",
      BIN,
      "--arch",
      "amd64",
      "--version",
      version,
      "--out",
      out,
    ],
    { env: { ...process.env, DEB_COMPRESSION: "none", SOURCE_DATE_EPOCH: "1767225600" }, stderr: "pipe" },
  );
  if (r.exitCode !== 0) throw new Error(`build-deb.sh failed: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

interface Entry {
  mode: string;
  owner: string;
  link?: string;
}

/** `dpkg-deb --contents` as path (without ./) -> mode string, owner, symlink target. */
function contents(file: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  for (const line of sh(["dpkg-deb", "--contents", file]).split("\n")) {
    const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.\/(\S*?)\/?(?: -> (\S+))?$/.exec(line);
    if (m?.[3]) entries.set(m[3], { mode: m[1]!, owner: m[2]!, link: m[4] });
  }
  return entries;
}

function field(control: string, name: string): string {
  return new RegExp(`^${name}: (.*)$`, "m").exec(control)?.[1] ?? "";
}

describe.skipIf(why !== undefined)("the Debian package", () => {
  beforeAll(() => {
    dir = tempDir("deb");
    deb = build(pkg.version, join(dir, "out"));
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("is named cryptpilot-fde_<version>_<arch>.deb and carries the agent, its second name and man pages", () => {
    expect(deb).toBe(join(dir, "out", `cryptpilot-fde_${pkg.version}_amd64.deb`));
    const files = contents(deb);
    expect(files.get("usr/bin/cryptpilot-fde")?.mode).toBe("-rwxr-xr-x");
    expect(files.get("usr/bin/cryptpilot-crypt")?.link).toBe("cryptpilot-fde");
    expect(files.get("usr/share/man/man1/cryptpilot-fde.1.gz")?.mode).toBe("-rw-r--r--");
    expect(files.get("usr/share/man/man1/cryptpilot-crypt.1.gz")?.link).toBe("cryptpilot-fde.1.gz");
    expect(files.get("usr/share/doc/cryptpilot-fde/copyright")).toBeDefined();
    expect(files.get("usr/share/doc/cryptpilot-fde/changelog.gz")).toBeDefined();
    for (const [path, e] of files) {
      expect(`${path} ${e.owner}`).toBe(`${path} root/root`);
      expect(
        path === "etc" || path.startsWith("etc/cryptpilot") || path === "usr" || path.startsWith("usr/"),
      ).toBe(true);
      // Nothing writable by group or others, nothing setuid (symlinks show as lrwxrwxrwx).
      if (!e.mode.startsWith("l"))
        expect(`${path} ${/^.....w|^........w|s/.test(e.mode)}`).toBe(`${path} false`);
    }
  });

  test("the dracut module holds exactly the files convert installs, scripts executable", () => {
    const files = contents(deb);
    const inModule = [...files.keys()]
      .filter((p) => p.startsWith(`${MODULE_DIR}/`))
      .map((p) => p.slice(MODULE_DIR.length + 1));
    expect(inModule.sort()).toEqual(Object.keys(MODULE_FILES).sort());
    for (const name of inModule) {
      expect(`${name} ${files.get(`${MODULE_DIR}/${name}`)!.mode}`).toBe(
        `${name} ${name.endsWith(".sh") ? "-rwxr-xr-x" : "-rw-r--r--"}`,
      );
    }
    const rule = "usr/lib/udev/rules.d/12-cryptpilot-hide-intermediate-devices.rules";
    expect(files.get(rule)?.mode).toBe("-rw-r--r--");
    expect(files.get("usr/lib/systemd/system/cryptpilot-volumes.service")?.mode).toBe("-rw-r--r--");
    expect(files.get("usr/lib/systemd/system/cryptpilot.service")?.link).toBe("cryptpilot-volumes.service");
  });

  test("control: version, architecture, Depends on the tools the boot stages run, TPM libraries recommended", () => {
    const control = sh(["dpkg-deb", "--field", deb]);
    expect(field(control, "Package")).toBe("cryptpilot-fde");
    expect(field(control, "Version")).toBe(pkg.version);
    // The project's maintainers (package.json "author"), not a placeholder; DEB_MAINTAINER overrides it.
    expect(field(control, "Maintainer")).toBe(pkg.author);
    expect(pkg.author).toMatch(/^[^<>]+ <[^@<>\s]+@[^@<>\s]+>$/);
    expect(field(control, "Architecture")).toBe("amd64");
    expect(Number(field(control, "Installed-Size"))).toBeGreaterThan(50_000);
    const depends = field(control, "Depends").split(/,\s*/);
    for (const d of [
      "cryptsetup-bin",
      "lvm2",
      "dmsetup",
      "dracut-core | dracut",
      "e2fsprogs",
      "fdisk",
      "cloud-guest-utils",
    ])
      expect(depends).toContain(d);
    // Debian 13 renamed the tss2 libraries (t64); both names satisfy the recommendation.
    expect(field(control, "Recommends")).toContain("libtss2-esys-3.0.2-0t64 | libtss2-esys-3.0.2-0");
    expect(field(control, "Recommends")).toContain("libtss2-tcti-device0t64 | libtss2-tcti-device0");
    expect(field(control, "Recommends").split(/,\s*/)).toContain("dracut-network");
  });

  test("every file under /etc is a conffile; the templates cover every key provider", () => {
    const ctl = join(dir, "control");
    sh(["dpkg-deb", "--control", deb, ctl]);
    const conffiles = readFileSync(join(ctl, "conffiles"), "utf8").trim().split("\n").sort();
    const etcFiles = [...contents(deb)]
      .filter(([p, e]) => p.startsWith("etc/") && e.mode.startsWith("-"))
      .map(([p]) => `/${p}`)
      .sort();
    expect(conffiles).toEqual(etcFiles);
    expect(conffiles).toContain("/etc/cryptpilot/fde.toml.template");
    expect(conffiles).toContain("/etc/cryptpilot/global.toml.template");
    for (const p of PROVIDER_TYPES) expect(conffiles).toContain(`/etc/cryptpilot/volumes/${p}.toml.template`);
    // Nothing that configures the system by being there: no fde.toml, no volumes/*.toml.
    expect(conffiles.filter((f) => f.endsWith(".toml"))).toEqual([]);
  });

  test("the templates, copied into place, pass config check; so does every commented provider of fde.toml", () => {
    const x = join(dir, "x");
    sh(["dpkg-deb", "-x", deb, x]);
    const etc = join(x, "etc/cryptpilot");
    const check = (cfg: string) => {
      const r = Bun.spawnSync(
        [process.execPath, MAIN, "-c", cfg, "config", "check", "--skip-check-passphrase"],
        {
          stderr: "pipe",
        },
      );
      return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
    };
    const cfg = join(dir, "cfg");
    mkdirSync(join(cfg, "volumes"), { recursive: true });
    cpSync(join(etc, "fde.toml.template"), join(cfg, "fde.toml"));
    cpSync(join(etc, "global.toml.template"), join(cfg, "global.toml"));
    for (const p of PROVIDER_TYPES) {
      // One mapper name and mount point per file: the templates all use data0.
      const text = readFileSync(join(etc, `volumes/${p}.toml.template`), "utf8")
        .replace(/^volume = ".*"$/m, `volume = "v${p}"`)
        .replace(/^mountpoint = ".*"$/m, `mountpoint = "/mnt/${p}"`);
      writeFileSync(join(cfg, `volumes/${p}.toml`), text);
    }
    const all = check(cfg);
    expect(all.out).toContain("rootfs: kbs key provider configured");
    for (const p of PROVIDER_TYPES) expect(all.out).toContain(`volume v${p} `);
    expect(all.code).toBe(0);

    // The commented alternatives: each "# [delta.encrypt.<p>]" block, uncommented, replaces kbs.
    const fde = readFileSync(join(etc, "fde.toml.template"), "utf8");
    const alternatives = fde.slice(fde.indexOf("# --- The other key providers"));
    const blocks = alternatives.split(/\n(?=# \[delta\.encrypt\.[a-z0-9]+\]\n)/).slice(1);
    const seen: string[] = [];
    for (const block of blocks) {
      const lines = block.split("\n");
      const body: string[] = [];
      for (const line of lines) {
        if (!/^# (\[|[a-z_]+ = )/.test(line)) break;
        body.push(line.slice(2));
      }
      const type = /^\[delta\.encrypt\.([a-z0-9]+)\]/.exec(body[0]!)![1]!;
      seen.push(type);
      const swapped = fde.replace(/^\[delta\.encrypt\.kbs\]\n(?:[^\n[#].*\n)*/m, `${body.join("\n")}\n`);
      expect(swapped).not.toBe(fde);
      const one = join(dir, `cfg-${type}`);
      mkdirSync(one);
      writeFileSync(join(one, "fde.toml"), swapped);
      const r = check(one);
      expect(`${type}: ${r.code} ${r.out}`).toContain(`${type}: 0 `);
      expect(r.out).toContain(`delta: ${type} key provider configured`);
    }
    // otp is refused for delta: every other provider has an example.
    expect(seen.sort()).toEqual(PROVIDER_TYPES.filter((p) => p !== "otp" && p !== "kbs").sort());
  });

  test("the installed dracut module is inert: dracut adds it only when asked, so no kernel update's initrd changes", () => {
    // dracut's check() protocol: 0 = include when building a generic initrd, 255 = only with
    // --add cryptpilot (docs/install.md: installing the package changes no initrd).
    const x = join(dir, "x3");
    sh(["dpkg-deb", "-x", deb, x]);
    const setup = join(x, MODULE_DIR, "module-setup.sh");
    const r = Bun.spawnSync(["bash", "-c", '. "$1"; check; echo "check=$?"', "bash", setup], {
      stderr: "pipe",
    });
    expect(r.stdout.toString().trim().split("\n").at(-1)).toBe("check=255");
  });

  test("started through the package's cryptpilot-crypt link, the agent takes upstream's data-volume command line", () => {
    const x = join(dir, "x2");
    sh(["dpkg-deb", "-x", deb, x]);
    const cfg = join(dir, "crypt-cfg");
    mkdirSync(join(cfg, "volumes"), { recursive: true });
    cpSync(join(x, "etc/cryptpilot/volumes/otp.toml.template"), join(cfg, "volumes/scratch.toml"));
    // upstream: `cryptpilot-crypt config check` checks the volume files only (here: volume check).
    const r = Bun.spawnSync(
      [join(x, "usr/bin/cryptpilot-crypt"), "-c", cfg, "config", "check", "--skip-check-passphrase"],
      { stderr: "pipe" },
    );
    const out = r.stdout.toString() + r.stderr.toString();
    expect(r.exitCode).toBe(0);
    expect(out).toContain("volume scratch0");
    expect(out).not.toContain("rootfs");
  });

  test.skipIf(Bun.which("lintian") === null)(
    "lintian finds nothing but what the overrides explain",
    () => {
      // The test package is uncompressed on purpose (make deb compresses).
      const r = Bun.spawnSync(
        [
          "lintian",
          "--suppress-tags",
          "uses-no-compression-for-control-tarball,uses-no-compression-for-data-tarball",
          deb,
        ],
        { stderr: "pipe" },
      );
      const tags = r.stdout
        .toString()
        .split("\n")
        .filter((l) => /^[EWI]: /.test(l));
      expect(tags).toEqual([]);
      expect(r.exitCode).toBe(0);
    },
    240_000,
  );

  describe.skipIf(!isRoot)("dpkg --root", () => {
    /** Every path under ROOT (relative, symlinks as links), but dpkg's own database and log. */
    function tree(root: string): string[] {
      const out: string[] = [];
      const walk = (d: string) => {
        for (const name of readdirSync(d)) {
          const p = join(d, name);
          const rel = relative(root, p);
          if (rel === "var/lib/dpkg" || rel === "var/log/dpkg.log") continue;
          out.push(rel);
          if (lstatSync(p).isDirectory()) walk(p);
        }
      };
      walk(root);
      return out.sort();
    }

    test("install, enable cryptpilot.service, upgrade with an edited conffile, purge: nothing left", () => {
      const root = join(dir, "root");
      for (const d of ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"])
        mkdirSync(join(root, d), { recursive: true });
      mkdirSync(join(root, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
      writeFileSync(join(root, "var/lib/dpkg/status"), "");
      const before = tree(root);
      // Dependencies are not installed in the scratch root; the scripts honour DPKG_ROOT.
      const dpkg = (...args: string[]) =>
        sh([
          "dpkg",
          `--root=${root}`,
          "--force-script-chrootless",
          "--force-depends",
          "--force-confold",
          ...args,
        ]);

      dpkg("-i", deb);
      expect(sh(["dpkg", `--root=${root}`, "-s", "cryptpilot-fde"])).toContain(
        "Status: install ok installed",
      );
      expect(lstatSync(join(root, "usr/bin/cryptpilot-fde")).mode & 0o777).toBe(0o755);
      expect(existsSync(join(root, MODULE_DIR, "module-setup.sh"))).toBe(true);

      // Upstream's docs: systemctl enable --now cryptpilot.service (the alias of our unit).
      if (Bun.which("systemctl")) {
        sh(["systemctl", `--root=${root}`, "enable", "cryptpilot.service"]);
        expect(
          lstatSync(
            join(root, "etc/systemd/system/multi-user.target.wants/cryptpilot-volumes.service"),
          ).isSymbolicLink(),
        ).toBe(true);
      }

      // The administrator edits a conffile; the upgrade keeps the edit.
      const template = join(root, "etc/cryptpilot/global.toml.template");
      writeFileSync(template, `${readFileSync(template, "utf8")}# edited\n`);
      const next = build(`${pkg.version}+1`, join(dir, "out-next"));
      dpkg("-i", next);
      expect(sh(["dpkg", `--root=${root}`, "-s", "cryptpilot-fde"])).toContain(`Version: ${pkg.version}+1`);
      expect(readFileSync(template, "utf8")).toEndWith("# edited\n");

      dpkg("--purge", "cryptpilot-fde");
      expect(tree(root)).toEqual(before);
    }, 120_000);
  });
});
