import { Module } from '@nestjs/common';
import { GraphQLModule } from '@nestjs/graphql';
import { MercuriusDriver, type MercuriusDriverConfig } from '@nestjs/mercurius';
import type { Logger } from 'pino';
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
      inject: [LOGGER, AuthService],
      useFactory: (log: Logger, auth: AuthService) => ({
        autoSchemaFile: true,
        sortSchema: true,
        path: '/graphql',
        graphiql: false,
        queryDepth: 10,
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
