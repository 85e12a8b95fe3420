import { describe, expect, test } from "bun:test";
import {
  decodeField1,
  decodeFrames,
  decodeRequest,
  decodeResponse,
  encodeField1,
  encodeFrame,
  encodeRequest,
  encodeResponse,
  MESSAGE_REQUEST,
} from "../../src/kbs/ttrpc.ts";

describe("ttrpc framing", () => {
  test("header layout: length and stream id big-endian, then type and flags", () => {
    const f = encodeFrame({ streamId: 3, type: MESSAGE_REQUEST, payload: new Uint8Array([9, 8]) });
    expect(Array.from(f)).toEqual([0, 0, 0, 2, 0, 0, 0, 3, 1, 0, 9, 8]);
  });
  test("frames split at any byte boundary reassemble", () => {
    const payload = encodeRequest({
      service: "api.GetResourceService",
      method: "GetResource",
      payload: encodeField1("kbs:///default/key/rootfs"),
      timeoutNano: 5_000_000_000n,
    });
    const wire = new Uint8Array([
      ...encodeFrame({ streamId: 1, type: 1, payload }),
      ...encodeFrame({ streamId: 3, type: 1, payload }),
    ]);
    let buf: Uint8Array = new Uint8Array();
    const got: number[] = [];
    for (const byte of wire) {
      const { frames, rest } = decodeFrames(new Uint8Array([...buf, byte]));
      buf = rest;
      for (const f of frames) {
        got.push(f.streamId);
        const req = decodeRequest(f.payload);
        expect(req).toMatchObject({
          service: "api.GetResourceService",
          method: "GetResource",
          timeoutNano: 5_000_000_000n,
        });
        expect(new TextDecoder().decode(decodeField1(req.payload))).toBe("kbs:///default/key/rootfs");
      }
    }
    expect(got).toEqual([1, 3]);
    expect(buf.length).toBe(0);
  });
  test("oversized frames are refused", () => {
    const header = new Uint8Array(10);
    new DataView(header.buffer).setUint32(0, 5 << 20);
    expect(() => decodeFrames(header)).toThrow("exceeds the 4 MiB limit");
  });
  test("responses: OK with payload, error status with message", () => {
    const ok = decodeResponse(
      encodeResponse({ code: 0, message: "", payload: encodeField1(new Uint8Array([0, 255])) }),
    );
    expect(ok.code).toBe(0);
    expect(Array.from(decodeField1(ok.payload))).toEqual([0, 255]);
    expect(
      decodeResponse(encodeResponse({ code: 5, message: "not found", payload: new Uint8Array() })),
    ).toMatchObject({
      code: 5,
      message: "not found",
    });
  });
});
