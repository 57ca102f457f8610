import { Type } from "typebox";

/** RFC 9457 problem details, as every error of this service is answered. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({ description: "Stable machine-readable error code" }),
  },
  { additionalProperties: true, description: "application/problem+json" },
);
