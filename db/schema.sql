\restrict dbmate

-- Dumped from database version 18.6
-- Dumped by pg_dump version 18.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: h2s_checkout_failures; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkout_failures (
    failure_id bigint NOT NULL,
    checkout_id uuid NOT NULL,
    phase text NOT NULL,
    error_code text NOT NULL,
    error_class text NOT NULL,
    message text NOT NULL,
    provider_request_id text,
    provider_code text,
    http_status integer,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: h2s_checkout_failures_failure_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_checkout_failures ALTER COLUMN failure_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_checkout_failures_failure_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_checkout_traces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkout_traces (
    seq bigint NOT NULL,
    checkout_id uuid NOT NULL,
    kind text NOT NULL,
    event text NOT NULL,
    from_state text,
    to_state text,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    duration_ms double precision,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT h2s_checkout_traces_kind_check CHECK ((kind = ANY (ARRAY['transition'::text, 'step'::text])))
);


--
-- Name: h2s_checkout_traces_seq_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.h2s_checkout_traces ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.h2s_checkout_traces_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: h2s_checkouts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_checkouts (
    checkout_id uuid NOT NULL,
    state text NOT NULL,
    idempotency_key text,
    key_source text NOT NULL,
    derived_key text NOT NULL,
    request_fingerprint text NOT NULL,
    request_body jsonb NOT NULL,
    stripe_idempotency_key text NOT NULL,
    order_id text,
    job_id uuid,
    session_id text,
    response_status integer,
    response_body jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    locked_until timestamp with time zone,
    attempts integer DEFAULT 1 NOT NULL,
    session_request jsonb,
    needs_settlement boolean DEFAULT false NOT NULL,
    CONSTRAINT h2s_checkouts_key_source_check CHECK ((key_source = ANY (ARRAY['client'::text, 'derived'::text]))),
    CONSTRAINT h2s_checkouts_state_check CHECK ((state = ANY (ARRAY['pending_payment'::text, 'job_queued'::text, 'session_created'::text, 'paid'::text, 'expired'::text, 'failed'::text, 'cleaned'::text])))
);


--
-- Name: h2s_dispatch_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_jobs (
    job_id uuid NOT NULL,
    order_id text NOT NULL,
    recipient_id uuid NOT NULL,
    sequence_id text NOT NULL,
    step_id text NOT NULL,
    status text NOT NULL,
    due_at timestamp with time zone NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_dispatch_jobs_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'dispatchable'::text, 'cancelled'::text])))
);


--
-- Name: h2s_dispatch_sequences; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_sequences (
    sequence_id text NOT NULL,
    name text NOT NULL,
    is_default boolean DEFAULT false NOT NULL
);


--
-- Name: h2s_dispatch_steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_dispatch_steps (
    step_id text NOT NULL,
    sequence_id text NOT NULL,
    "position" integer NOT NULL,
    name text NOT NULL,
    is_start boolean DEFAULT false NOT NULL
);


--
-- Name: h2s_orders; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_orders (
    order_id text NOT NULL,
    checkout_id uuid NOT NULL,
    recipient_id uuid NOT NULL,
    status text NOT NULL,
    customer jsonb NOT NULL,
    items jsonb NOT NULL,
    subtotal_cents integer NOT NULL,
    total_cents integer NOT NULL,
    currency text NOT NULL,
    session_id text,
    metadata_json jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    paid_at timestamp with time zone,
    CONSTRAINT h2s_orders_status_check CHECK ((status = ANY (ARRAY['pending_payment'::text, 'paid'::text, 'expired'::text, 'cancelled'::text]))),
    CONSTRAINT h2s_orders_subtotal_cents_check CHECK ((subtotal_cents >= 0)),
    CONSTRAINT h2s_orders_total_cents_check CHECK ((total_cents >= 0))
);


--
-- Name: h2s_recipients; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_recipients (
    recipient_id uuid DEFAULT gen_random_uuid() NOT NULL,
    email_normalized text NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    phone text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: h2s_service_catalog; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_service_catalog (
    sku text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    unit_amount_cents integer NOT NULL,
    currency text DEFAULT 'usd'::text NOT NULL,
    max_quantity integer DEFAULT 10 NOT NULL,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT h2s_service_catalog_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT h2s_service_catalog_max_quantity_check CHECK (((max_quantity >= 1) AND (max_quantity <= 100))),
    CONSTRAINT h2s_service_catalog_sku_check CHECK ((sku ~ '^[a-z0-9][a-z0-9-]{1,63}$'::text)),
    CONSTRAINT h2s_service_catalog_unit_amount_cents_check CHECK ((unit_amount_cents > 0))
);


--
-- Name: h2s_webhook_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.h2s_webhook_events (
    event_id text NOT NULL,
    type text NOT NULL,
    session_id text,
    checkout_id uuid,
    result text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    payload jsonb NOT NULL
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version character varying NOT NULL
);


--
-- Name: h2s_checkout_failures h2s_checkout_failures_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_failures
    ADD CONSTRAINT h2s_checkout_failures_pkey PRIMARY KEY (failure_id);


--
-- Name: h2s_checkout_traces h2s_checkout_traces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_traces
    ADD CONSTRAINT h2s_checkout_traces_pkey PRIMARY KEY (seq);


--
-- Name: h2s_checkouts h2s_checkouts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_pkey PRIMARY KEY (checkout_id);


--
-- Name: h2s_checkouts h2s_checkouts_stripe_idempotency_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_stripe_idempotency_key_key UNIQUE (stripe_idempotency_key);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_order_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_order_id_key UNIQUE (order_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_pkey PRIMARY KEY (job_id);


--
-- Name: h2s_dispatch_sequences h2s_dispatch_sequences_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_sequences
    ADD CONSTRAINT h2s_dispatch_sequences_pkey PRIMARY KEY (sequence_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_pkey PRIMARY KEY (step_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_sequence_id_position_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_sequence_id_position_key UNIQUE (sequence_id, "position");


--
-- Name: h2s_orders h2s_orders_checkout_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_checkout_id_key UNIQUE (checkout_id);


--
-- Name: h2s_orders h2s_orders_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_pkey PRIMARY KEY (order_id);


--
-- Name: h2s_orders h2s_orders_session_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_session_id_key UNIQUE (session_id);


--
-- Name: h2s_recipients h2s_recipients_email_normalized_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_recipients
    ADD CONSTRAINT h2s_recipients_email_normalized_key UNIQUE (email_normalized);


--
-- Name: h2s_recipients h2s_recipients_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_recipients
    ADD CONSTRAINT h2s_recipients_pkey PRIMARY KEY (recipient_id);


--
-- Name: h2s_service_catalog h2s_service_catalog_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_service_catalog
    ADD CONSTRAINT h2s_service_catalog_pkey PRIMARY KEY (sku);


--
-- Name: h2s_webhook_events h2s_webhook_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_webhook_events
    ADD CONSTRAINT h2s_webhook_events_pkey PRIMARY KEY (event_id);


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: h2s_checkout_failures_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_failures_at ON public.h2s_checkout_failures USING btree (at DESC);


--
-- Name: h2s_checkout_failures_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_failures_checkout ON public.h2s_checkout_failures USING btree (checkout_id);


--
-- Name: h2s_checkout_traces_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkout_traces_checkout ON public.h2s_checkout_traces USING btree (checkout_id, seq);


--
-- Name: h2s_checkouts_client_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_checkouts_client_key ON public.h2s_checkouts USING btree (idempotency_key) WHERE ((key_source = 'client'::text) AND (idempotency_key IS NOT NULL) AND (state <> 'cleaned'::text));


--
-- Name: h2s_checkouts_client_key_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_client_key_created ON public.h2s_checkouts USING btree (created_at) WHERE ((key_source = 'client'::text) AND (idempotency_key IS NOT NULL));


--
-- Name: h2s_checkouts_derived_key; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_derived_key ON public.h2s_checkouts USING btree (derived_key, created_at DESC);


--
-- Name: h2s_checkouts_needs_settlement; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_needs_settlement ON public.h2s_checkouts USING btree (updated_at) WHERE needs_settlement;


--
-- Name: h2s_checkouts_open_sessions; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_open_sessions ON public.h2s_checkouts USING btree (updated_at) WHERE (state = 'session_created'::text);


--
-- Name: h2s_checkouts_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_checkouts_state ON public.h2s_checkouts USING btree (state, updated_at) WHERE (state <> ALL (ARRAY['session_created'::text, 'cleaned'::text]));


--
-- Name: h2s_dispatch_jobs_recipient; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_dispatch_jobs_recipient ON public.h2s_dispatch_jobs USING btree (recipient_id, created_at DESC);


--
-- Name: h2s_dispatch_jobs_status; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_dispatch_jobs_status ON public.h2s_dispatch_jobs USING btree (status, created_at DESC);


--
-- Name: h2s_dispatch_sequences_one_default; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_dispatch_sequences_one_default ON public.h2s_dispatch_sequences USING btree (is_default) WHERE is_default;


--
-- Name: h2s_dispatch_steps_one_start; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX h2s_dispatch_steps_one_start ON public.h2s_dispatch_steps USING btree (sequence_id) WHERE is_start;


--
-- Name: h2s_orders_created_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_created_at ON public.h2s_orders USING btree (created_at DESC);


--
-- Name: h2s_orders_recipient; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_orders_recipient ON public.h2s_orders USING btree (recipient_id, created_at DESC);


--
-- Name: h2s_webhook_events_checkout; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_webhook_events_checkout ON public.h2s_webhook_events USING btree (checkout_id);


--
-- Name: h2s_webhook_events_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX h2s_webhook_events_received ON public.h2s_webhook_events USING btree (received_at DESC);


--
-- Name: h2s_checkout_failures h2s_checkout_failures_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_failures
    ADD CONSTRAINT h2s_checkout_failures_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_checkout_traces h2s_checkout_traces_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkout_traces
    ADD CONSTRAINT h2s_checkout_traces_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_checkouts h2s_checkouts_job_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.h2s_dispatch_jobs(job_id) DEFERRABLE INITIALLY DEFERRED;


--
-- Name: h2s_checkouts h2s_checkouts_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_checkouts
    ADD CONSTRAINT h2s_checkouts_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id) DEFERRABLE INITIALLY DEFERRED;


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.h2s_orders(order_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_recipient_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_recipient_id_fkey FOREIGN KEY (recipient_id) REFERENCES public.h2s_recipients(recipient_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_sequence_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_sequence_id_fkey FOREIGN KEY (sequence_id) REFERENCES public.h2s_dispatch_sequences(sequence_id);


--
-- Name: h2s_dispatch_jobs h2s_dispatch_jobs_step_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_jobs
    ADD CONSTRAINT h2s_dispatch_jobs_step_id_fkey FOREIGN KEY (step_id) REFERENCES public.h2s_dispatch_steps(step_id);


--
-- Name: h2s_dispatch_steps h2s_dispatch_steps_sequence_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_dispatch_steps
    ADD CONSTRAINT h2s_dispatch_steps_sequence_id_fkey FOREIGN KEY (sequence_id) REFERENCES public.h2s_dispatch_sequences(sequence_id);


--
-- Name: h2s_orders h2s_orders_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- Name: h2s_orders h2s_orders_recipient_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_orders
    ADD CONSTRAINT h2s_orders_recipient_id_fkey FOREIGN KEY (recipient_id) REFERENCES public.h2s_recipients(recipient_id);


--
-- Name: h2s_webhook_events h2s_webhook_events_checkout_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.h2s_webhook_events
    ADD CONSTRAINT h2s_webhook_events_checkout_id_fkey FOREIGN KEY (checkout_id) REFERENCES public.h2s_checkouts(checkout_id);


--
-- PostgreSQL database dump complete
--

\unrestrict dbmate


--
-- Dbmate schema migrations
--

INSERT INTO public.schema_migrations (version) VALUES
    ('20261126000001'),
    ('20261126000002'),
    ('20261126000003'),
    ('20261126000004'),
    ('20261127000001');
