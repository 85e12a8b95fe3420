/**
 * The configuration bundle of issue #17: upstream's test bundles read, and the measured hash is
 * upstream's gen_hash_content (Rust toml 0.8 to_string of its structs, toml_edit 0.22's quoting)
 * byte for byte. Expected texts below are worked out from upstream's struct definitions and
 * toml_edit's encoder, not from our code.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { BUNDLE_HEADER, dumpBundle, readBundle } from "../../src/config/bundle.ts";
import { DEFAULT_GLOBAL } from "../../src/config/fde.ts";
import { ConfigFileError } from "../../src/config/issues.ts";
import { DEFAULT_CDH_SOCKET, tomlString } from "../../src/config/upstream-toml.ts";

const sha384 = (s: string) => createHash("sha384").update(s).digest("hex");

/** upstream cryptpilot-fde/src/config/cloud_init.rs test_deserialize_from_initrd. */
const UPSTREAM_CLOUD_INIT = `#cryptpilot-fde-config

[global.boot]
verbose = true

[fde.rootfs]
delta_location = "disk"

[fde.rootfs.encrypt.exec]
command = "echo"
args = ["-n", "AAAaaawewe222"]

[fde.delta]
integrity = true

[fde.delta.encrypt.exec]
command = "echo"
args = ["-n", "AAAaaawewe222"]`;

const CERT = `-----BEGIN CERTIFICATE-----
XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX
XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX
-----END CERTIFICATE-----
`;

/** upstream cryptpilot-fde/src/config/fde.rs test_deserialize, as [fde.*] tables of a bundle. */
const UPSTREAM_KBS = `#cryptpilot-fde-config
[fde.rootfs]
delta_location = "disk"
delta_backend = "dm-snapshot"

[fde.rootfs.encrypt.kbs]
kbs_url = "https://1.2.3.4:8080"
key_uri = "kbs:///default/test/rootfs_partition"
kbs_root_cert = """
${CERT}"""

[fde.delta]
integrity = true

[fde.delta.encrypt.kbs]
kbs_url = "https://1.2.3.4:8080"
key_uri = "kbs:///default/test/data_partition"
kbs_root_cert = """
${CERT}"""
`;

describe("upstream's test bundles", () => {
  test("cloud_init.rs: parsed, and hashed over upstream's compact serialisation", () => {
    const parsed = readBundle("user data", UPSTREAM_CLOUD_INIT);
    expect(parsed.bundle.global.boot.verbose).toBe(true);
    expect(parsed.bundle.fde?.delta.encrypt).toMatchObject({ type: "exec", command: "echo" });
    const expected = `[global.boot]
verbose = true

[fde.rootfs]
delta_location = "disk"

[fde.rootfs.encrypt.exec]
command = "echo"
args = ["-n", "AAAaaawewe222"]

[fde.delta]
integrity = true

[fde.delta.encrypt.exec]
command = "echo"
args = ["-n", "AAAaaawewe222"]
`;
    expect(parsed.hashContent).toBe(expected);
    expect(parsed.sha384).toBe(sha384(expected));
  });

  test("fde.rs kbs: cdh_type written (serde's tag), certificate as a basic multi-line string, key_uri last", () => {
    const parsed = readBundle("user data", UPSTREAM_KBS);
    const kbs = (uri: string) => `cdh_type = "one-shot"
kbs_url = "https://1.2.3.4:8080"
kbs_root_cert = """
${CERT}"""
key_uri = "kbs:///default/test/${uri}"
`;
    expect(parsed.hashContent).toBe(`[fde.rootfs]
delta_location = "disk"
delta_backend = "dm-snapshot"

[fde.rootfs.encrypt.kbs]
${kbs("rootfs_partition")}
[fde.delta]
integrity = true

[fde.delta.encrypt.kbs]
${kbs("data_partition")}`);
  });
});

const EXEC = `[fde.rootfs]\n[fde.delta.encrypt.exec]\ncommand = "k"\n`;

describe("the measured hash", () => {
  test("defaults upstream fills in are written (args = [], integrity = false, verbose), absent Options are not", () => {
    const p = readBundle("u", `${BUNDLE_HEADER}\n[global.boot]\n${EXEC}`);
    // [fde.rootfs] with every Option absent is an empty table, whose header toml_edit keeps.
    expect(p.hashContent).toBe(
      `[global.boot]\nverbose = false\n\n[fde.rootfs]\n\n[fde.delta]\nintegrity = false\n\n[fde.delta.encrypt.exec]\ncommand = "k"\nargs = []\n`,
    );
  });

  test("an empty table keeps its header ([global] without boot, tpm2 = {}), as toml_edit prints it", () => {
    const p = readBundle("u", `${BUNDLE_HEADER}\n[global]\n[fde.rootfs]\n[fde.delta.encrypt.tpm2]\n`);
    expect(p.hashContent).toBe(
      "[global]\n\n[fde.rootfs]\n\n[fde.delta]\nintegrity = false\n\n[fde.delta.encrypt.tpm2]\n",
    );
  });

  test("old names ([data], rw_overlay) hash as the new ones, and key order does not matter", () => {
    const a = readBundle(
      "u",
      `${BUNDLE_HEADER}\n[fde.rootfs]\ndelta_location = "ram"\n[fde.delta.encrypt.exec]\nargs = ["x"]\ncommand = "k"\n`,
    );
    const b = readBundle(
      "u",
      `${BUNDLE_HEADER}\n[fde.rootfs]\nrw_overlay = "ram"\n[fde.data.encrypt.exec]\ncommand = "k"\nargs = ["x"]\n`,
    );
    expect(b.sha384).toBe(a.sha384);
  });

  test("kbs daemon gets upstream's default socket; kms auth modes become ClientKey / EcsRamRole tables", () => {
    const daemon = readBundle(
      "u",
      `${BUNDLE_HEADER}\n[fde.rootfs]\n[fde.delta.encrypt.kbs]\ncdh_type = "daemon"\nkey_uri = "kbs:///a/b/c"\n`,
    );
    expect(daemon.hashContent).toContain(
      `[fde.delta.encrypt.kbs]\ncdh_type = "daemon"\ncdh_socket = "${DEFAULT_CDH_SOCKET}"\nkey_uri = "kbs:///a/b/c"\n`,
    );
    const ram = readBundle(
      "u",
      `${BUNDLE_HEADER}\n[fde.rootfs]\n[fde.delta.encrypt.kms]\nauth_mode = "ecs_ram_role"\nregion_id = "cn-beijing"\nkms_instance_id = "kst-1"\nsecret_name = "s"\n`,
    );
    expect(ram.hashContent).toEndWith(
      `[fde.delta.encrypt.kms]\nkms_instance_id = "kst-1"\nsecret_name = "s"\n\n[fde.delta.encrypt.kms.EcsRamRole]\nregion_id = "cn-beijing"\n`,
    );
  });

  test("a field only we know (exec timeout_secs) is measured too: it changes the hash", () => {
    const plain = readBundle("u", `${BUNDLE_HEADER}\n${EXEC}`);
    const more = readBundle("u", `${BUNDLE_HEADER}\n${EXEC}timeout_secs = 5\n`);
    expect(more.hashContent).toContain("args = []\ntimeout_secs = 5\n");
    expect(more.sha384).not.toBe(plain.sha384);
  });

  test("oidc: upstream's order, its kms table by serde's tag; our token-command table kept as a sub-table", () => {
    const p = readBundle(
      "u",
      `${BUNDLE_HEADER}\n[fde.rootfs]\n[fde.delta.encrypt.oidc]\nkey_id = "k"\n[fde.delta.encrypt.oidc.kms]\nregion_id = "cn"\ntype = "aliyun"\noidc_provider_arn = "a"\nrole_arn = "r"\n[fde.delta.encrypt.oidc.oidc_token_from_exec]\ncommand = "x"\nargs = ["1"]\n`,
    );
    expect(p.hashContent).toEndWith(
      `[fde.delta.encrypt.oidc]\nkey_id = "k"\n\n[fde.delta.encrypt.oidc.kms]\ntype = "aliyun"\noidc_provider_arn = "a"\nrole_arn = "r"\nregion_id = "cn"\n\n[fde.delta.encrypt.oidc.oidc_token_from_exec]\nargs = ["1"]\ncommand = "x"\n`,
    );
  });

  test("toml_edit's string styles: literal when it has \" or \\, escapes for control characters", () => {
    expect(tomlString("plain")).toBe('"plain"');
    expect(tomlString('say "hi"')).toBe(`'say "hi"'`);
    expect(tomlString(`it's "x"`)).toBe(`'''it's "x"'''`);
    expect(tomlString("C:\\dir")).toBe("'C:\\dir'");
    expect(tomlString("a\tb")).toBe('"a\\tb"');
    expect(tomlString("bell\u0007")).toBe('"bell\\u0007"');
    expect(tomlString("x\"'")).toBe('"x\\"\'"');
    expect(tomlString('l1\n"q"')).toBe(`'''\nl1\n"q"'''`);
    expect(tomlString("l1\nl2\r")).toBe('"""\nl1\nl2\\r"""');
  });
});

describe("config dump's bundle", () => {
  test("the hash in its header is the one a reader computes (ours, and upstream's over the same structs)", () => {
    const parsed = readBundle("u", UPSTREAM_CLOUD_INIT);
    const dumped = dumpBundle(parsed.bundle);
    const printed = /The sha384 hash of this config is: ([0-9a-f]{96})/.exec(dumped)?.[1];
    const reread = readBundle("dump", dumped);
    expect(printed).toBe(reread.sha384);
    // Pretty: arrays of two or more items one per line, as to_string_pretty writes them.
    expect(dumped).toContain('args = [\n    "-n",\n    "AAAaaawewe222",\n]\n');
    expect(reread.bundle).toEqual(parsed.bundle);
  });

  test("a default bundle: global.boot with verbose only, readable by upstream", () => {
    const dumped = dumpBundle({ global: DEFAULT_GLOBAL });
    expect(dumped).toEndWith("\n\n\n[global.boot]\nverbose = false\n");
  });
});

describe("malformed bundles", () => {
  test("no header, bad TOML, unknown field: a ConfigFileError naming the source and field", () => {
    expect(() => readBundle("ECS user data", "[fde.rootfs]\n")).toThrow(ConfigFileError);
    expect(() => readBundle("ECS user data", `${BUNDLE_HEADER}\n[fde.rootfs\n`)).toThrow(
      /ECS user data line 2/,
    );
    expect(() => readBundle("ECS user data", `${BUNDLE_HEADER}\n[fde.rootfs]\nbogus = 1\n`)).toThrow(/bogus/);
  });
});
