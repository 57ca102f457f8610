import { createHash } from "node:crypto";

/** Tokens are stored only as this hash (hex SHA-256): a database leak yields no usable token. */
export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");
