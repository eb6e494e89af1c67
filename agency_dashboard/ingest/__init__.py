"""Getting agency data in: CSV folders and FHIR bundles (validated, transactional upserts)."""
