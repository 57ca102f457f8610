import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { preHandlerAsyncHookHandler } from "fastify";
import { Type } from "typebox";
import type { AppointmentReads } from "../../services/appointments.js";
import type { JoinTokenService } from "../../services/join-tokens.js";
import type { OperatorActions } from "../../services/operator-actions.js";
import { hasScope, requireScope } from "../plugins/authentication.js";
import {
  Appointment,
  AuditPage,
  EventsQuery,
  ExternalIdParams,
  JoinTokenRequest,
  JoinTokenResponse,
  KillSwitchBody,
} from "../../schemas/appointments.js";
import { absentBodyIsEmpty, cursorPage } from "../../schemas/common.js";
import { AUTHENTICATED, BODY, DATABASE, problems, RATE_LIMITED, SCOPED } from "../../schemas/problems.js";

const bearer = [{ bearer: [] }];

interface AppointmentRouteOptions {
  reads: AppointmentReads;
  joinTokens: JoinTokenService;
  operatorActions: OperatorActions;
  joinRateLimit: preHandlerAsyncHookHandler | null;
}

const appointmentRoutes: FastifyPluginAsyncTypebox<AppointmentRouteOptions> = async (app, options) => {
  const { reads, joinTokens, operatorActions } = options;

  app.get(
    "/v1/appointments/:externalId",
    {
      onRequest: [app.authenticate],
      schema: {
        tags: ["appointments"],
        summary: "Read an appointment (its agent, its customer, or scope appointments:read)",
        security: bearer,
        params: ExternalIdParams,
        response: {
          200: Appointment,
          ...problems("invalid_request", ...AUTHENTICATED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request) => {
      return reads.read(request.params.externalId, {
        userId: request.caller.userId,
        canReadAny: hasScope(request.caller, "appointments:read"),
      });
    },
  );

  app.post(
    "/v1/appointments/:externalId/join-token",
    {
      onRequest: [app.authenticate],
      preValidation: [absentBodyIsEmpty],
      preHandler: options.joinRateLimit ? [options.joinRateLimit] : [],
      schema: {
        tags: ["appointments"],
        summary: "Issue a join token to the appointment's agent or customer, inside the join window",
        security: bearer,
        params: ExternalIdParams,
        body: JoinTokenRequest,
        response: {
          201: JoinTokenResponse,
          ...problems(
            ...BODY,
            ...AUTHENTICATED,
            "not_found",
            "appointment_cancelled",
            "access_blocked",
            "too_early",
            "waiting_for_host",
            "join_window_closed",
            "active_elsewhere",
            "participant_limit",
            "provider_unavailable",
            ...RATE_LIMITED,
            ...DATABASE,
          ),
        },
      },
    },
    async (request, reply) => {
      const issued = await joinTokens.issue({
        externalId: request.params.externalId,
        userId: request.caller.userId,
        supersede: request.body?.supersede === true,
      });
      app.domainMetrics.tokensIssued.inc({ role: issued.role });
      return reply.code(201).header("cache-control", "no-store").send(issued);
    },
  );

  app.post(
    "/v1/appointments/:externalId/revoke",
    {
      onRequest: [app.authenticate, requireScope("tokens:revoke")],
      preValidation: [absentBodyIsEmpty],
      schema: {
        tags: ["operations"],
        summary: "Revoke every live token of an appointment; with block, stop new ones (kill switch)",
        security: bearer,
        params: ExternalIdParams,
        body: KillSwitchBody,
        response: {
          200: Type.Object({ revoked: Type.Integer(), appointment: Appointment }),
          ...problems(...BODY, ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request) => {
      return operatorActions.revokeAll(request.params.externalId, request.body ?? {}, `operator:${request.caller.userId}`);
    },
  );

  app.post(
    "/v1/appointments/:externalId/unblock",
    {
      onRequest: [app.authenticate, requireScope("tokens:revoke")],
      preValidation: [absentBodyIsEmpty],
      schema: {
        tags: ["operations"],
        summary: "Lift the kill switch",
        security: bearer,
        params: ExternalIdParams,
        body: Type.Object({}, { description: "No options; send no body or {}" }),
        response: {
          200: Type.Object({ appointment: Appointment }),
          ...problems(...BODY, ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request) => {
      return operatorActions.unblock(request.params.externalId, `operator:${request.caller.userId}`);
    },
  );

  app.get(
    "/v1/appointments/:externalId/events",
    {
      onRequest: [app.authenticate, requireScope("appointments:read")],
      schema: {
        tags: ["operations"],
        summary: "Audit trail of an appointment, oldest first",
        security: bearer,
        params: ExternalIdParams,
        querystring: EventsQuery,
        response: {
          200: AuditPage,
          ...problems("invalid_request", ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request) => {
      const { after, limit } = cursorPage(request.query, 100, 500);
      return reads.events(request.params.externalId, after, limit);
    },
  );
};

export default appointmentRoutes;
