import { afterEach } from "vitest";
import { takeMismatches } from "./openapi.js";

// An answer over real HTTP that does not match /openapi.json fails the test during which it was sent.
afterEach(() => {
  const mismatches = takeMismatches();
  if (mismatches.length > 0) throw new Error(mismatches.join("\n"));
});
