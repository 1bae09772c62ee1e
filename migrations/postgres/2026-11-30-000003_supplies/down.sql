DROP TABLE stock_balances;
DROP INDEX stock_movements_depot_item;
DROP TABLE stock_movements;
DROP INDEX lots_depot_item;
DROP TABLE lots;
DROP TABLE quotas;
DROP TABLE items;
DROP TABLE depots;
