-- Run by PostgreSQL on its first start (an empty pgdata volume). A stack created before a
-- database was listed here needs it made once: docker compose exec postgres createdb -U postgres labels
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE DATABASE labels;
