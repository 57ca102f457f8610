import { describe, expect, it } from "vitest";
import { checkTargetUrl, firstForbidden, forbiddenRange } from "../../src/domain/delivery-targets.js";

describe("the addresses lifecycle events may be sent to", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.254", "private"],
    ["192.168.0.10", "private"],
    ["169.254.169.254", "linkLocal"],
    ["fe80::1", "linkLocal"],
    ["fc00::1", "uniqueLocal"],
    ["fd00:ec2::254", "uniqueLocal"],
    ["100.100.100.200", "carrierGradeNat"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["192.0.2.1", "reserved"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:10.0.0.1", "private"],
    ["2002:7f00:1::", "6to4"],
    ["64:ff9b::7f00:1", "rfc6052"],
  ])("refuses %s (%s)", (address, range) => {
    expect(forbiddenRange(address)).toBe(range);
  });

  it.each(["93.184.215.14", "8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "::ffff:93.184.215.14"])("allows the public address %s", (address) => {
    expect(forbiddenRange(address)).toBeNull();
  });

  it("names the first forbidden address of a resolution, or none", () => {
    expect(firstForbidden(["93.184.215.14", "10.0.0.1", "127.0.0.1"])).toEqual({ address: "10.0.0.1", range: "private" });
    expect(firstForbidden(["93.184.215.14", "2606:4700:4700::1111"])).toBeNull();
  });
});

describe("a subscription URL", () => {
  const problemOf = (url: string, allowPrivate = false) => {
    const check = checkTargetUrl(url, allowPrivate);
    return check.ok ? null : check.problem;
  };

  it("must be an https URL with a host and no credentials", () => {
    expect(problemOf("https://hooks.example.com/joinwindow?x=1")).toBeNull();
    expect(problemOf("http://hooks.example.com/")).toMatch(/https/);
    expect(problemOf("ftp://hooks.example.com/")).toMatch(/https/);
    expect(problemOf("https://user:pass@hooks.example.com/")).toMatch(/credentials/);
    expect(problemOf("not a url")).toMatch(/valid/);
    expect(problemOf(`https://hooks.example.com/${"a".repeat(2100)}`)).toMatch(/longer/);
  });

  it("refuses a literal address that is not public, in any of its spellings", () => {
    for (const url of [
      "https://127.0.0.1/",
      "https://2130706433/",
      "https://0x7f.0.0.1/",
      "https://[::1]/",
      "https://[::ffff:127.0.0.1]/",
      "https://169.254.169.254/latest/meta-data/",
      "https://10.0.0.1:8443/",
      "https://[fd00:ec2::254]/",
    ]) {
      expect(problemOf(url), url).toMatch(/not a public address/);
    }
    expect(problemOf("https://93.184.215.14/")).toBeNull();
  });

  it("leaves a host name to be resolved, and says whether the host is a literal", () => {
    const check = checkTargetUrl("https://hooks.example.com:8443/x", false);
    expect(check).toMatchObject({ ok: true, host: "hooks.example.com", literal: false });
    expect(checkTargetUrl("https://[2606:4700:4700::1111]/", false)).toMatchObject({ ok: true, host: "2606:4700:4700::1111", literal: true });
  });

  it("with private targets allowed, takes http and any address", () => {
    expect(problemOf("http://127.0.0.1:4000/hook", true)).toBeNull();
    expect(problemOf("https://[::1]/", true)).toBeNull();
    expect(problemOf("https://user:pass@127.0.0.1/", true)).toMatch(/credentials/);
    expect(problemOf("ftp://127.0.0.1/", true)).toMatch(/https/);
  });
});
