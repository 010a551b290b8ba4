import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { CONFIG, type Config } from '../../config/config.js';
import { Transactions } from '../tenancy/transactions.js';
import { createDataSource } from './data-source.js';
import { ENTITIES } from './entities.js';

@Global()
@Module({
  providers: [
    {
      provide: DataSource,
      inject: [CONFIG],
      useFactory: async (c: Config) => {
        if (!c.database.url) throw new Error('DATABASE_URL is not set');
        return createDataSource(c.database.url, {
          poolSize: c.database.poolSize,
          entities: ENTITIES,
        }).initialize();
      },
    },
    Transactions,
  ],
  exports: [DataSource, Transactions],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(@Inject(DataSource) private readonly ds: DataSource) {}
  async onApplicationShutdown() {
    if (this.ds.isInitialized) await this.ds.destroy();
  }
}
