/** `[boot] ntp_servers` in global.toml: checked like the kernel argument, dumped only when set. */
import { describe, expect, test } from "bun:test";
import { bundleToToml, parseBundle } from "../../src/config/bundle.ts";
import { DEFAULT_GLOBAL } from "../../src/config/fde.ts";
import { parseConfigTexts } from "../../src/config/index.ts";

const boot = (text: string) => parseConfigTexts({ global: text }, "/etc/cryptpilot").global.boot;

describe("[boot] ntp_servers", () => {
  test("default: none", () => {
    expect(boot("").ntpServers).toEqual([]);
    expect(DEFAULT_GLOBAL.boot.ntpServers).toEqual([]);
  });

  test("host names, addresses and ports are taken", () => {
    const servers = ["ntp.example.org", "10.0.2.2:1123", "[fd00::1]:123", "fd00::2"];
    expect(boot(`[boot]\nntp_servers = ${JSON.stringify(servers)}\n`).ntpServers).toEqual(servers);
  });

  test("refused, naming the field: a bad name, a bad port, more than 8 servers, not a list", () => {
    for (const bad of [
      '["ntp example"]',
      '["a:0"]',
      '["a:99999"]',
      '["[::1"]',
      `[${'"a",'.repeat(9)}]`,
      '"a"',
    ]) {
      expect(() => boot(`[boot]\nntp_servers = ${bad}\n`)).toThrow(/ntp_servers/);
    }
  });

  test("config dump writes it only when set (a default bundle stays readable by upstream)", () => {
    const plain = bundleToToml({ global: DEFAULT_GLOBAL });
    expect(plain).not.toContain("ntp_servers");
    const global = { boot: { ...DEFAULT_GLOBAL.boot, ntpServers: ["10.0.2.2:1123"] } };
    const text = bundleToToml({ global });
    expect(text).toContain('ntp_servers = [ "10.0.2.2:1123" ]');
    expect(parseBundle("dump", `#cryptpilot-fde-config\n${text}`).global.boot.ntpServers).toEqual([
      "10.0.2.2:1123",
    ]);
  });
});

describe("isIP (node:net's, without loading node:net)", () => {
  test("agrees with node:net on addresses and near misses", async () => {
    const net = await import("node:net");
    const { isIP } = await import("../../src/clock/servers.ts");
    for (const s of [
      "10.0.2.2",
      "255.255.255.255",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3",
      "::1",
      "fd00::1",
      "::ffff:1.2.3.4",
      "1::2::3",
      ":::",
      "g::1",
      "ntp.example.org",
      "",
      "1:2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7:8:9",
    ]) {
      expect(`${s} ${isIP(s)}`).toBe(`${s} ${net.isIP(s)}`);
    }
    // Zone ids (link-local with %iface) are the one difference: not taken as NTP servers.
    expect(isIP("fe80::1%eth0")).toBe(0);
  });
});
