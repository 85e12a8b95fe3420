import { describe, expect, test } from "bun:test";
import { COOKIE_JAR_MAX_COOKIES, COOKIE_MAX_BYTES, CookieJar } from "../../src/net/cookies.ts";

const KBS = "https://kbs.example.com:8080/kbs/v0";

function jar(at = 1_000_000) {
  const clock = { now: at };
  return { clock, jar: new CookieJar(() => clock.now) };
}

describe("cookie jar (RFC 6265 rules a broker session needs)", () => {
  test("every cookie is kept and sent back, not only kbs-session-id", () => {
    const { jar: j } = jar();
    j.store(`${KBS}/auth`, [
      "kbs-session-id=abc; Expires=Wed, 01 Jan 2100 00:00:00 GMT",
      "SERVERID=r2; Path=/",
    ]);
    expect(j.header(`${KBS}/attest`)).toBe("kbs-session-id=abc; SERVERID=r2");
  });
  test("host-only cookies go to that host only; Domain cookies to the domain and its subdomains", () => {
    const { jar: j } = jar();
    j.store("https://kbs.example.com/kbs/v0/auth", ["a=1; Path=/", "b=2; Domain=.example.com; Path=/"]);
    expect(j.header("https://kbs.example.com/x")).toBe("a=1; b=2");
    expect(j.header("https://other.example.com/x")).toBe("b=2");
    expect(j.header("https://sub.kbs.example.com/x")).toBe("b=2");
    expect(j.header("https://example.org/x")).toBeUndefined();
  });
  test("a Domain that is not the host's own is refused; IP hosts only match themselves", () => {
    const { jar: j } = jar();
    j.store("https://kbs.example.com/kbs/v0/auth", ["x=1; Domain=evil.com", "y=1; Domain=le.com"]);
    j.store("http://10.0.2.2:8080/kbs/v0/auth", ["z=1; Domain=0.2.2", "w=1; Domain=10.0.2.2; Path=/"]);
    expect(j.header("https://kbs.example.com/kbs/v0/attest")).toBeUndefined();
    expect(j.header("http://10.0.2.2:8080/kbs/v0/attest")).toBe("w=1");
    expect(j.header("http://110.0.2.2/kbs/v0/attest")).toBeUndefined();
  });
  test("Path: default is the request's directory; path-match is by segment; longer paths first", () => {
    const { jar: j } = jar();
    j.store(`${KBS}/auth`, ["d=1", "root=1; Path=/", "kbs=1; Path=/kbs", "no=1; Path=/kb"]);
    expect(j.header(`${KBS}/resource/default/key/rootfs`)).toBe("d=1; kbs=1; root=1");
    expect(j.header("https://kbs.example.com:8080/kbsx")).toBe("root=1");
    expect(j.header("https://kbs.example.com:8080/kb")).toBe("no=1; root=1");
  });
  test("Expires and Max-Age (Max-Age wins); expired cookies are not sent; a past expiry deletes", () => {
    const { clock, jar: j } = jar(Date.parse("2030-01-01T00:00:00Z"));
    j.store(`${KBS}/auth`, [
      "e=1; Expires=Tue, 01 Jan 2030 00:01:00 GMT",
      "m=1; Max-Age=30; Expires=Wed, 01 Jan 2100 00:00:00 GMT",
      "s=1",
      "bad=1; Max-Age=soon",
    ]);
    expect(j.header(`${KBS}/x`)).toBe("e=1; m=1; s=1; bad=1");
    expect(j.expiry(`${KBS}/x`, "m")).toBe(clock.now + 30_000);
    clock.now += 31_000;
    expect(j.header(`${KBS}/x`)).toBe("e=1; s=1; bad=1");
    clock.now += 30_000;
    expect(j.header(`${KBS}/x`)).toBe("s=1; bad=1");
    j.store(`${KBS}/auth`, ["s=; Max-Age=0", "bad=2"]);
    expect(j.header(`${KBS}/x`)).toBe("bad=2");
    expect(j.expiry(`${KBS}/x`, "s")).toBeUndefined();
  });
  test("Secure cookies: only over https, and never accepted from a plain-http reply", () => {
    const { jar: j } = jar();
    j.store("https://kbs/kbs/v0/auth", ["s=1; Secure", "p=1"]);
    j.store("http://kbs/kbs/v0/auth", ["t=1; Secure"]);
    expect(j.header("https://kbs/kbs/v0/attest")).toBe("s=1; p=1");
    expect(j.header("http://kbs/kbs/v0/attest")).toBe("p=1");
  });
  test("bounded: oversized cookies and cookies past the jar's cap are dropped", () => {
    const { jar: j } = jar();
    j.store(`${KBS}/auth`, [`big=${"x".repeat(COOKIE_MAX_BYTES)}`, "=nameless", "novalue"]);
    expect(j.header(`${KBS}/x`)).toBeUndefined();
    j.store(
      `${KBS}/auth`,
      Array.from({ length: COOKIE_JAR_MAX_COOKIES + 10 }, (_, i) => `c${i}=${i}`),
    );
    expect(j.header(`${KBS}/x`)!.split("; ").length).toBe(COOKIE_JAR_MAX_COOKIES);
    // Replacing a cookie that is already held still works at the cap.
    j.store(`${KBS}/auth`, ["c0=new"]);
    expect(j.header(`${KBS}/x`)).toContain("c0=new");
  });
});
