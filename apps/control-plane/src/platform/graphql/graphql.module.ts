import { Module } from '@nestjs/common';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import { GraphQLError, type DocumentNode, type GraphQLSchema } from 'graphql';
import { getComplexity, simpleEstimator } from 'graphql-query-complexity';
import type { Logger } from 'pino';
import { CONFIG, type Config } from '../../config/config.js';
import { AuthModule } from '../auth/auth.module.js';
import { AuthService } from '../auth/auth.service.js';
import { graphqlErrorFormatter } from '../errors/error-formatter.js';
import { LOGGER } from '../logging/logging.module.js';
import { DateTimeScalar } from './date-time.scalar.js';
import { assertStorableInput } from './storable-input.js';

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
        buildSchemaOptions: { scalarsMap: [{ type: Date, scalar: DateTimeScalar }] },
        path: '/graphql',
        graphiql: false,
        // Refused before execution: depth and a cost of one point per field (abuse limits), and
        // strings Postgres cannot store.
        queryDepth: config.limits.graphqlMaxDepth,
        // Cost is checked once the variables are known and before anything executes (a validation
        // rule would need variables too, which would turn off Mercurius's document cache).
        hooks: {
          preExecution: [
            (
              schema: GraphQLSchema,
              document: DocumentNode,
              _context: unknown,
              variables: Record<string, unknown>,
            ) => {
              assertStorableInput(document, variables);
              let cost: number;
              try {
                cost = getComplexity({
                  schema,
                  query: document,
                  variables,
                  estimators: [simpleEstimator({ defaultComplexity: 1 })],
                });
              } catch {
                return; // invalid variables: execution reports them
              }
              const max = config.limits.graphqlMaxComplexity;
              if (cost > max) throw new GraphQLError(`query is too complex: cost ${cost}, limit ${max}`);
            },
          ],
        },
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
