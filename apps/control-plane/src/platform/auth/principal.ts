/** Who is calling. The tenant comes from here and nowhere else. */
export interface Principal {
  kind: 'user';
  tenantId: string;
  userId: string;
  tokenId: string;
}
