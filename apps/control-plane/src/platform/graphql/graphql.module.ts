import { Module } from '@nestjs/common';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { GraphQLError } from 'graphql';
import { createComplexityRule, simpleEstimator } from 'graphql-query-complexity';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { AuthModule } from '../auth/auth.module.js';
import { AuthService } from '../auth/auth.service.js';
import { graphqlErrorFormatter } from '../errors/error-formatter.js';
import { LOGGER } from '../logging/logging.module.js';

/** Code-first GraphQL on Mercurius at POST /graphql, subscriptions over graphql-ws on the same path. */
@Module({
  imports: [
    GraphQLModule.forRootAsync<MercuriusDriverConfig>({
      driver: MercuriusDriver,
      imports: [AuthModule],
      inject: [LOGGER, AuthService, CONFIG],
      useFactory: (log: Logger, auth: AuthService, config: Config) => ({
        autoSchemaFile: true,
        sortSchema: true,
        path: '/graphql',
        graphiql: false,
        // Abuse limits, refused before execution: depth, and a cost of one point per field.
        queryDepth: config.limits.graphqlMaxDepth,
        // A fixed rule (no per-request variables), so Mercurius can keep caching validated documents.
        validationRules: [
          createComplexityRule({
            maximumComplexity: config.limits.graphqlMaxComplexity,
            estimators: [simpleEstimator({ defaultComplexity: 1 })],
            createError: (max: number, actual: number) =>
              new GraphQLError(`query is too complex: cost ${actual}, limit ${max}`),
          }),
        ],
        jit: 1, // compile each query with graphql-jit after its first use
        errorFormatter: graphqlErrorFormatter(log) as MercuriusDriverConfig['errorFormatter'],
        subscription: {
          keepAlive: 15_000,
          // graphql-ws connection_init payload: { authorization: 'Bearer …' }
          onConnect: async ({
            payload,
          }: {
            payload?: { authorization?: string; Authorization?: string };
          }) => {
            try {
              return { principal: await auth.authenticate(payload?.authorization ?? payload?.Authorization) };
            } catch {
              return false;
            }
          },
        },
      }),
    }),
  ],
})
export class HearthGraphQLModule {}
