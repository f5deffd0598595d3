# ruff: noqa: E501  (a table: one row of the standard a line)
"""PS3.15 Annex E, Table E.1-1: the Application Level Confidentiality Profile Attributes, as data.

Transcribed from DICOM PS3.15 edition :data:`EDITION` (tags and action codes are facts
of the standard; the names are pydicom keywords where pydicom knows the tag, else the
standard's name without spaces). :mod:`bridge.dicom.deid` applies it; docs/archival.md,
"Publishing: de-identification", says why the table is kept here rather than taken from
a library.

One row a line, columns separated by spaces:

``tag``
    ``(gggg,eeee)``; ``x`` stands for any hex digit of a repeating group (50xx curves,
    60xx overlays); ``(gggg,eeee)`` alone is the row for private attributes.
``retired``
    ``Y`` when the attribute is retired.
then one action code a column (``-``: the column is empty), in the standard's order:
    Basic Profile, Retain Safe Private, Retain UIDs, Retain Device Identity, Retain
    Institution Identity, Retain Patient Characteristics, Retain Longitudinal Temporal
    Information with Full Dates, ... with Modified Dates, Clean Descriptors, Clean
    Structured Content, Clean Graphics.
``name``
    what the row is about, for people.

Action codes (PS3.15 E.1.1): D dummy value, Z zero length (or dummy), X remove, K keep,
C clean, U replace the UID consistently, and X/Z, X/D, X/Z/D, Z/D, X/Z/U*: the first
unless the next is needed to keep the IOD valid (Type 3 versus Type 2 versus Type 1).
"""

from __future__ import annotations

__all__ = ["COLUMNS", "EDITION", "TABLE"]

EDITION = "2020c"
"""The edition of PS3.15 the table was read from (the text as published in August 2020)."""

COLUMNS = (
    "basic",
    "safe-private",
    "uids",
    "device-identity",
    "institution-identity",
    "patient-characteristics",
    "longitudinal-full-dates",
    "longitudinal-modified-dates",
    "clean-descriptors",
    "clean-structured-content",
    "clean-graphics",
)
"""The action columns of :data:`TABLE`, in order."""

TABLE = """\
(0000,1000) N X       -       K       -       -       -       -       -       -       -       -       AffectedSOPInstanceUID
(0000,1001) N U       -       K       -       -       -       -       -       -       -       -       RequestedSOPInstanceUID
(0002,0003) N U       -       K       -       -       -       -       -       -       -       -       MediaStorageSOPInstanceUID
(0004,1511) N U       -       K       -       -       -       -       -       -       -       -       ReferencedSOPInstanceUIDInFile
(0008,0014) N U       -       K       -       -       -       -       -       -       -       -       InstanceCreatorUID
(0008,0015) N X       -       -       -       -       -       K       C       -       -       -       InstanceCoercionDateTime
(0008,0018) N U       -       K       -       -       -       -       -       -       -       -       SOPInstanceUID
(0008,0020) N Z       -       -       -       -       -       K       C       -       -       -       StudyDate
(0008,0021) N X/D     -       -       -       -       -       K       C       -       -       -       SeriesDate
(0008,0022) N X/Z     -       -       -       -       -       K       C       -       -       -       AcquisitionDate
(0008,0023) N Z/D     -       -       -       -       -       K       C       -       -       -       ContentDate
(0008,0024) Y X       -       -       -       -       -       K       C       -       -       -       OverlayDate
(0008,0025) Y X       -       -       -       -       -       K       C       -       -       -       CurveDate
(0008,002A) N X/Z/D   -       -       -       -       -       K       C       -       -       -       AcquisitionDateTime
(0008,0030) N Z       -       -       -       -       -       K       C       -       -       -       StudyTime
(0008,0031) N X/D     -       -       -       -       -       K       C       -       -       -       SeriesTime
(0008,0032) N X/Z     -       -       -       -       -       K       C       -       -       -       AcquisitionTime
(0008,0033) N Z/D     -       -       -       -       -       K       C       -       -       -       ContentTime
(0008,0034) Y X       -       -       -       -       -       K       C       -       -       -       OverlayTime
(0008,0035) Y X       -       -       -       -       -       K       C       -       -       -       CurveTime
(0008,0050) N Z       -       -       -       -       -       -       -       -       -       -       AccessionNumber
(0008,0058) N U       -       K       -       -       -       -       -       -       -       -       FailedSOPInstanceUIDList
(0008,0080) N X/Z/D   -       -       -       K       -       -       -       -       -       -       InstitutionName
(0008,0081) N X       -       -       -       K       -       -       -       -       -       -       InstitutionAddress
(0008,0082) N X/Z/D   -       -       -       K       -       -       -       -       -       -       InstitutionCodeSequence
(0008,0090) N Z       -       -       -       -       -       -       -       -       -       -       ReferringPhysicianName
(0008,0092) N X       -       -       -       -       -       -       -       -       -       -       ReferringPhysicianAddress
(0008,0094) N X       -       -       -       -       -       -       -       -       -       -       ReferringPhysicianTelephoneNumbers
(0008,0096) N X       -       -       -       -       -       -       -       -       -       -       ReferringPhysicianIdentificationSequence
(0008,009C) N Z       -       -       -       -       -       -       -       -       -       -       ConsultingPhysicianName
(0008,009D) N X       -       -       -       -       -       -       -       -       -       -       ConsultingPhysicianIdentificationSequence
(0008,0201) N X       -       -       -       -       -       K       C       -       -       -       TimezoneOffsetFromUTC
(0008,1010) N X/Z/D   -       -       K       -       -       -       -       -       -       -       StationName
(0008,1030) N X       -       -       -       -       -       -       -       C       -       -       StudyDescription
(0008,103E) N X       -       -       -       -       -       -       -       C       -       -       SeriesDescription
(0008,1040) N X       -       -       -       K       -       -       -       -       -       -       InstitutionalDepartmentName
(0008,1041) N X       -       -       -       K       -       -       -       -       -       -       InstitutionalDepartmentTypeCodeSequence
(0008,1048) N X       -       -       -       -       -       -       -       -       -       -       PhysiciansOfRecord
(0008,1049) N X       -       -       -       -       -       -       -       -       -       -       PhysiciansOfRecordIdentificationSequence
(0008,1050) N X       -       -       -       -       -       -       -       -       -       -       PerformingPhysicianName
(0008,1052) N X       -       -       -       -       -       -       -       -       -       -       PerformingPhysicianIdentificationSequence
(0008,1060) N X       -       -       -       -       -       -       -       -       -       -       NameOfPhysiciansReadingStudy
(0008,1062) N X       -       -       -       -       -       -       -       -       -       -       PhysiciansReadingStudyIdentificationSequence
(0008,1070) N X/Z/D   -       -       -       -       -       -       -       -       -       -       OperatorsName
(0008,1072) N X/D     -       -       -       -       -       -       -       -       -       -       OperatorIdentificationSequence
(0008,1080) N X       -       -       -       -       -       -       -       C       -       -       AdmittingDiagnosesDescription
(0008,1084) N X       -       -       -       -       -       -       -       C       -       -       AdmittingDiagnosesCodeSequence
(0008,1110) N X/Z     -       K       -       -       -       -       -       -       -       -       ReferencedStudySequence
(0008,1111) N X/Z/D   -       K       -       -       -       -       -       -       -       -       ReferencedPerformedProcedureStepSequence
(0008,1120) N X       -       X       -       -       -       -       -       -       -       -       ReferencedPatientSequence
(0008,1140) N X/Z/U*  -       K       -       -       -       -       -       -       -       -       ReferencedImageSequence
(0008,1155) N U       -       K       -       -       -       -       -       -       -       -       ReferencedSOPInstanceUID
(0008,1195) N U       -       K       -       -       -       -       -       -       -       -       TransactionUID
(0008,2111) N X       -       -       -       -       -       -       -       C       -       -       DerivationDescription
(0008,2112) N X/Z/U*  -       K       -       -       -       -       -       -       -       -       SourceImageSequence
(0008,3010) N U       -       K       -       -       -       -       -       -       -       -       IrradiationEventUID
(0008,4000) Y X       -       -       -       -       -       -       -       C       -       -       IdentifyingComments
(0010,0010) N Z       -       -       -       -       -       -       -       -       -       -       PatientName
(0010,0020) N Z       -       -       -       -       -       -       -       -       -       -       PatientID
(0010,0021) N X       -       -       -       -       -       -       -       -       -       -       IssuerOfPatientID
(0010,0030) N Z       -       -       -       -       -       -       -       -       -       -       PatientBirthDate
(0010,0032) N X       -       -       -       -       -       -       -       -       -       -       PatientBirthTime
(0010,0040) N Z       -       -       -       -       K       -       -       -       -       -       PatientSex
(0010,0050) N X       -       -       -       -       -       -       -       -       -       -       PatientInsurancePlanCodeSequence
(0010,0101) N X       -       -       -       -       -       -       -       -       -       -       PatientPrimaryLanguageCodeSequence
(0010,0102) N X       -       -       -       -       -       -       -       -       -       -       PatientPrimaryLanguageModifierCodeSequence
(0010,1000) Y X       -       -       -       -       -       -       -       -       -       -       OtherPatientIDs
(0010,1001) N X       -       -       -       -       -       -       -       -       -       -       OtherPatientNames
(0010,1002) N X       -       -       -       -       -       -       -       -       -       -       OtherPatientIDsSequence
(0010,1005) N X       -       -       -       -       -       -       -       -       -       -       PatientBirthName
(0010,1010) N X       -       -       -       -       K       -       -       -       -       -       PatientAge
(0010,1020) N X       -       -       -       -       K       -       -       -       -       -       PatientSize
(0010,1030) N X       -       -       -       -       K       -       -       -       -       -       PatientWeight
(0010,1040) N X       -       -       -       -       -       -       -       -       -       -       PatientAddress
(0010,1050) Y X       -       -       -       -       -       -       -       -       -       -       InsurancePlanIdentification
(0010,1060) N X       -       -       -       -       -       -       -       -       -       -       PatientMotherBirthName
(0010,1080) N X       -       -       -       -       -       -       -       -       -       -       MilitaryRank
(0010,1081) N X       -       -       -       -       -       -       -       -       -       -       BranchOfService
(0010,1090) Y X       -       -       -       -       -       -       -       -       -       -       MedicalRecordLocator
(0010,1100) N X       -       -       -       -       -       -       -       -       -       -       ReferencedPatientPhotoSequence
(0010,2000) N X       -       -       -       -       -       -       -       C       -       -       MedicalAlerts
(0010,2110) N X       -       -       -       -       C       -       -       C       -       -       Allergies
(0010,2150) N X       -       -       -       -       -       -       -       -       -       -       CountryOfResidence
(0010,2152) N X       -       -       -       -       -       -       -       -       -       -       RegionOfResidence
(0010,2154) N X       -       -       -       -       -       -       -       -       -       -       PatientTelephoneNumbers
(0010,2155) N X       -       -       -       -       -       -       -       -       -       -       PatientTelecomInformation
(0010,2160) N X       -       -       -       -       K       -       -       -       -       -       EthnicGroup
(0010,2180) N X       -       -       -       -       -       -       -       C       -       -       Occupation
(0010,21A0) N X       -       -       -       -       K       -       -       -       -       -       SmokingStatus
(0010,21B0) N X       -       -       -       -       -       -       -       C       -       -       AdditionalPatientHistory
(0010,21C0) N X       -       -       -       -       K       -       -       -       -       -       PregnancyStatus
(0010,21D0) N X       -       -       -       -       -       K       C       -       -       -       LastMenstrualDate
(0010,21F0) N X       -       -       -       -       -       -       -       -       -       -       PatientReligiousPreference
(0010,2203) N X/Z     -       -       -       -       K       -       -       -       -       -       PatientSexNeutered
(0010,2297) N X       -       -       -       -       -       -       -       -       -       -       ResponsiblePerson
(0010,2299) N X       -       -       -       -       -       -       -       -       -       -       ResponsibleOrganization
(0010,4000) N X       -       -       -       -       -       -       -       C       -       -       PatientComments
(0012,0010) N D       -       -       -       -       -       -       -       -       -       -       ClinicalTrialSponsorName
(0012,0020) N D       -       -       -       -       -       -       -       -       -       -       ClinicalTrialProtocolID
(0012,0021) N Z       -       -       -       -       -       -       -       -       -       -       ClinicalTrialProtocolName
(0012,0030) N Z       -       -       -       K       -       -       -       -       -       -       ClinicalTrialSiteID
(0012,0031) N Z       -       -       -       K       -       -       -       -       -       -       ClinicalTrialSiteName
(0012,0040) N D       -       -       -       -       -       -       -       -       -       -       ClinicalTrialSubjectID
(0012,0042) N D       -       -       -       -       -       -       -       -       -       -       ClinicalTrialSubjectReadingID
(0012,0050) N Z       -       -       -       -       -       -       -       -       -       -       ClinicalTrialTimePointID
(0012,0051) N X       -       -       -       -       -       -       -       C       -       -       ClinicalTrialTimePointDescription
(0012,0060) N Z       -       -       -       K       -       -       -       -       -       -       ClinicalTrialCoordinatingCenterName
(0012,0071) N X       -       -       -       -       -       -       -       -       -       -       ClinicalTrialSeriesID
(0012,0072) N X       -       -       -       -       -       -       -       C       -       -       ClinicalTrialSeriesDescription
(0012,0081) N D       -       -       -       K       -       -       -       -       -       -       ClinicalTrialProtocolEthicsCommitteeName
(0012,0082) N X       -       -       -       -       -       -       -       -       -       -       ClinicalTrialProtocolEthicsCommitteeApprovalNumber
(0016,002B) N X       -       -       -       -       -       -       -       C       -       -       MakerNote
(0016,004B) N X       -       -       -       -       -       -       -       C       -       -       DeviceSettingDescription
(0016,004D) N X       -       -       -       -       -       -       -       -       -       -       CameraOwnerName
(0016,004E) N X       -       -       K       -       -       -       -       -       -       -       LensSpecification
(0016,004F) N X       -       -       K       -       -       -       -       -       -       -       LensMake
(0016,0050) N X       -       -       K       -       -       -       -       -       -       -       LensModel
(0016,0051) N X       -       -       K       -       -       -       -       -       -       -       LensSerialNumber
(0016,0070) N X       -       -       -       -       -       -       -       -       -       -       GPSVersionID
(0016,0071) N X       -       -       -       -       -       -       -       -       -       -       GPSLatitudeRef
(0016,0072) N X       -       -       -       -       -       -       -       -       -       -       GPSLatitude
(0016,0073) N X       -       -       -       -       -       -       -       -       -       -       GPSLongitudeRef
(0016,0074) N X       -       -       -       -       -       -       -       -       -       -       GPSLongitude
(0016,0075) N X       -       -       -       -       -       -       -       -       -       -       GPSAltitudeRef
(0016,0076) N X       -       -       -       -       -       -       -       -       -       -       GPSAltitude
(0016,0077) N X       -       -       -       -       -       -       -       -       -       -       GPSTimeStamp
(0016,0078) N X       -       -       -       -       -       -       -       -       -       -       GPSSatellites
(0016,0079) N X       -       -       -       -       -       -       -       -       -       -       GPSStatus
(0016,007A) N X       -       -       -       -       -       -       -       -       -       -       GPSMeasureMode
(0016,007B) N X       -       -       -       -       -       -       -       -       -       -       GPSDOP
(0016,007C) N X       -       -       -       -       -       -       -       -       -       -       GPSSpeedRef
(0016,007D) N X       -       -       -       -       -       -       -       -       -       -       GPSSpeed
(0016,007E) N X       -       -       -       -       -       -       -       -       -       -       GPSTrackRef
(0016,007F) N X       -       -       -       -       -       -       -       -       -       -       GPSTrack
(0016,0080) N X       -       -       -       -       -       -       -       -       -       -       GPSImgDirectionRef
(0016,0081) N X       -       -       -       -       -       -       -       -       -       -       GPSImgDirection
(0016,0082) N X       -       -       -       -       -       -       -       -       -       -       GPSMapDatum
(0016,0083) N X       -       -       -       -       -       -       -       -       -       -       GPSDestLatitudeRef
(0016,0084) N X       -       -       -       -       -       -       -       -       -       -       GPSDestLatitude
(0016,0085) N X       -       -       -       -       -       -       -       -       -       -       GPSDestLongitudeRef
(0016,0086) N X       -       -       -       -       -       -       -       -       -       -       GPSDestLongitude
(0016,0087) N X       -       -       -       -       -       -       -       -       -       -       GPSDestBearingRef
(0016,0088) N X       -       -       -       -       -       -       -       -       -       -       GPSDestBearing
(0016,0089) N X       -       -       -       -       -       -       -       -       -       -       GPSDestDistanceRef
(0016,008A) N X       -       -       -       -       -       -       -       -       -       -       GPSDestDistance
(0016,008B) N X       -       -       -       -       -       -       -       -       -       -       GPSProcessingMethod
(0016,008C) N X       -       -       -       -       -       -       -       -       -       -       GPSAreaInformation
(0016,008D) N X       -       -       -       -       -       K       C       -       -       -       GPSDateStamp
(0016,008E) N X       -       -       -       -       -       -       -       -       -       -       GPSDifferential
(0018,0010) N Z/D     -       -       -       -       -       -       -       C       -       -       ContrastBolusAgent
(0018,1000) N X/Z/D   -       -       K       -       -       -       -       -       -       -       DeviceSerialNumber
(0018,1002) N U       -       K       K       -       -       -       -       -       -       -       DeviceUID
(0018,1004) N X       -       -       K       -       -       -       -       -       -       -       PlateID
(0018,1005) N X       -       -       K       -       -       -       -       -       -       -       GeneratorID
(0018,1007) N X       -       -       K       -       -       -       -       -       -       -       CassetteID
(0018,1008) N X       -       -       K       -       -       -       -       -       -       -       GantryID
(0018,1009) N X       -       -       K       -       -       -       -       -       -       -       UniqueDeviceIdentifier
(0018,100A) N X       -       -       K       -       -       -       -       -       -       -       UDISequence
(0018,100B) N U       -       K       K       -       -       -       -       -       -       -       ManufacturerDeviceClassUID
(0018,1030) N X/D     -       -       -       -       -       -       -       C       -       -       ProtocolName
(0018,1400) N X/D     -       -       -       -       -       -       -       C       -       -       AcquisitionDeviceProcessingDescription
(0018,2042) N U       -       K       -       -       -       -       -       -       -       -       TargetUID
(0018,4000) Y X       -       -       -       -       -       -       -       C       -       -       AcquisitionComments
(0018,700A) N X/D     -       -       K       -       -       -       -       -       -       -       DetectorID
(0018,9185) N X       -       -       -       -       -       -       -       C       -       -       RespiratoryMotionCompensationTechniqueDescription
(0018,9367) N D       -       -       K       -       -       -       -       -       -       -       XRaySourceID
(0018,9369) N D       -       -       -       -       -       K       C       -       -       -       SourceStartDateTime
(0018,936A) N D       -       -       -       -       -       K       C       -       -       -       SourceEndDateTime
(0018,9371) N D       -       -       K       -       -       -       -       -       -       -       XRayDetectorID
(0018,9373) N X       -       -       K       -       -       -       -       -       -       -       XRayDetectorLabel
(0018,937B) N X       -       -       -       -       -       -       -       C       -       -       MultienergyAcquisitionDescription
(0018,937F) N X       -       -       -       -       -       -       -       C       -       -       DecompositionDescription
(0018,9424) N X       -       -       -       -       -       -       -       C       -       -       AcquisitionProtocolDescription
(0018,9516) N X/D     -       -       -       -       -       K       C       -       -       -       StartAcquisitionDateTime
(0018,9517) N X/D     -       -       -       -       -       K       C       -       -       -       EndAcquisitionDateTime
(0018,A003) N X       -       -       -       -       -       -       -       C       -       -       ContributionDescription
(0020,000D) N U       -       K       -       -       -       -       -       -       -       -       StudyInstanceUID
(0020,000E) N U       -       K       -       -       -       -       -       -       -       -       SeriesInstanceUID
(0020,0010) N Z       -       -       -       -       -       -       -       -       -       -       StudyID
(0020,0052) N U       -       K       -       -       -       -       -       -       -       -       FrameOfReferenceUID
(0020,0200) N U       -       K       -       -       -       -       -       -       -       -       SynchronizationFrameOfReferenceUID
(0020,3401) Y X       -       -       -       -       -       -       -       -       -       -       ModifyingDeviceID
(0020,3406) Y X       -       -       -       -       -       -       -       -       -       -       ModifiedImageDescription
(0020,4000) N X       -       -       -       -       -       -       -       C       -       -       ImageComments
(0020,9158) N X       -       -       -       -       -       -       -       C       -       -       FrameComments
(0020,9161) N U       -       K       -       -       -       -       -       -       -       -       ConcatenationUID
(0020,9164) N U       -       K       -       -       -       -       -       -       -       -       DimensionOrganizationUID
(0028,1199) N U       -       K       -       -       -       -       -       -       -       -       PaletteColorLookupTableUID
(0028,1214) Y U       -       K       -       -       -       -       -       -       -       -       LargePaletteColorLookupTableUID
(0028,4000) Y X       -       -       -       -       -       -       -       -       -       -       ImagePresentationComments
(0032,0012) Y X       -       -       -       -       -       -       -       -       -       -       StudyIDIssuer
(0032,1020) Y X       -       -       K       -       -       -       -       -       -       -       ScheduledStudyLocation
(0032,1021) Y X       -       -       K       -       -       -       -       -       -       -       ScheduledStudyLocationAETitle
(0032,1030) Y X       -       -       -       -       -       -       -       C       -       -       ReasonForStudy
(0032,1032) N X       -       -       -       -       -       -       -       -       -       -       RequestingPhysician
(0032,1033) N X       -       -       -       -       -       -       -       -       -       -       RequestingService
(0032,1060) N X/Z     -       -       -       -       -       -       -       C       -       -       RequestedProcedureDescription
(0032,1066) N X       -       -       -       -       -       -       -       C       -       -       ReasonForVisit
(0032,1067) N X       -       -       -       -       -       -       -       C       -       -       ReasonForVisitCodeSequence
(0032,1070) N X       -       -       -       -       -       -       -       C       -       -       RequestedContrastAgent
(0032,4000) Y X       -       -       -       -       -       -       -       C       -       -       StudyComments
(0034,0001) N D       -       -       -       -       -       -       -       -       -       -       FlowIdentifierSequence
(0034,0002) N D       -       -       -       -       -       -       -       -       -       -       FlowIdentifier
(0034,0005) N D       -       -       -       -       -       -       -       -       -       -       SourceIdentifier
(0034,0007) N D       -       -       -       -       -       K       C       -       -       -       FrameOriginTimestamp
(0038,0004) N X       -       -       -       -       -       -       -       -       -       -       ReferencedPatientAliasSequence
(0038,0010) N X       -       -       -       -       -       -       -       -       -       -       AdmissionID
(0038,0011) Y X       -       -       -       -       -       -       -       -       -       -       IssuerOfAdmissionID
(0038,0014) N X       -       -       -       -       -       -       -       -       -       -       IssuerOfAdmissionIDSequence
(0038,001E) Y X       -       -       -       -       -       -       -       -       -       -       ScheduledPatientInstitutionResidence
(0038,0020) N X       -       -       -       -       -       K       C       -       -       -       AdmittingDate
(0038,0021) N X       -       -       -       -       -       K       C       -       -       -       AdmittingTime
(0038,0040) Y X       -       -       -       -       -       -       -       C       -       -       DischargeDiagnosisDescription
(0038,0050) N X       -       -       -       -       C       -       -       -       -       -       SpecialNeeds
(0038,0060) N X       -       -       -       -       -       -       -       -       -       -       ServiceEpisodeID
(0038,0061) Y X       -       -       -       -       -       -       -       -       -       -       IssuerOfServiceEpisodeID
(0038,0062) N X       -       -       -       -       -       -       -       C       -       -       ServiceEpisodeDescription
(0038,0064) N X       -       -       -       -       -       -       -       -       -       -       IssuerOfServiceEpisodeIDSequence
(0038,0300) N X       -       -       -       -       -       -       -       -       -       -       CurrentPatientLocation
(0038,0400) N X       -       -       -       -       -       -       -       -       -       -       PatientInstitutionResidence
(0038,0500) N X       -       -       -       -       C       -       -       C       -       -       PatientState
(0038,4000) N X       -       -       -       -       -       -       -       C       -       -       VisitComments
(003A,0310) N U       -       K       -       -       -       -       -       -       -       -       MultiplexGroupUID
(003A,0314) N D       -       -       -       -       -       K       C       -       -       -       ImpedanceMeasurementDateTime
(0040,0001) N X       -       -       K       -       -       -       -       -       -       -       ScheduledStationAETitle
(0040,0002) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepStartDate
(0040,0003) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepStartTime
(0040,0004) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepEndDate
(0040,0005) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepEndTime
(0040,0006) N X       -       -       -       -       -       -       -       -       -       -       ScheduledPerformingPhysicianName
(0040,0007) N X       -       -       -       -       -       -       -       C       -       -       ScheduledProcedureStepDescription
(0040,000B) N X       -       -       -       -       -       -       -       -       -       -       ScheduledPerformingPhysicianIdentificationSequence
(0040,0010) N X       -       -       K       -       -       -       -       -       -       -       ScheduledStationName
(0040,0011) N X       -       -       K       -       -       -       -       -       -       -       ScheduledProcedureStepLocation
(0040,0012) N X       -       -       -       -       C       -       -       -       -       -       PreMedication
(0040,0241) N X       -       -       K       -       -       -       -       -       -       -       PerformedStationAETitle
(0040,0242) N X       -       -       K       -       -       -       -       -       -       -       PerformedStationName
(0040,0243) N X       -       -       -       -       -       -       -       -       -       -       PerformedLocation
(0040,0244) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepStartDate
(0040,0245) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepStartTime
(0040,0250) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepEndDate
(0040,0251) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepEndTime
(0040,0253) N X       -       -       -       -       -       -       -       -       -       -       PerformedProcedureStepID
(0040,0254) N X       -       -       -       -       -       -       -       C       -       -       PerformedProcedureStepDescription
(0040,0275) N X       -       -       -       -       -       -       -       C       -       -       RequestAttributesSequence
(0040,0280) N X       -       -       -       -       -       -       -       C       -       -       CommentsOnThePerformedProcedureStep
(0040,050A) Y X       -       -       -       -       -       -       -       -       -       -       SpecimenAccessionNumber
(0040,0512) N D       -       -       -       -       -       -       -       -       -       -       ContainerIdentifier
(0040,0513) N Z       -       -       -       -       -       -       -       -       -       -       IssuerOfTheContainerIdentifierSequence
(0040,051A) N X       -       -       -       -       -       -       -       C       -       -       ContainerDescription
(0040,0551) N D       -       -       -       -       -       -       -       -       -       -       SpecimenIdentifier
(0040,0554) N U       -       K       -       -       -       -       -       -       -       -       SpecimenUID
(0040,0555) N X/Z     -       -       -       -       -       -       -       -       C       -       AcquisitionContextSequence
(0040,0562) N Z       -       -       -       -       -       -       -       -       -       -       IssuerOfTheSpecimenIdentifierSequence
(0040,0600) N X       -       -       -       -       -       -       -       C       -       -       SpecimenShortDescription
(0040,0602) N X       -       -       -       -       -       -       -       C       -       -       SpecimenDetailedDescription
(0040,0610) N Z       -       -       -       -       -       -       -       -       C       -       SpecimenPreparationSequence
(0040,06FA) Y X       -       -       -       -       -       -       -       -       -       -       SlideIdentifier
(0040,1001) N X       -       -       -       -       -       -       -       -       -       -       RequestedProcedureID
(0040,1002) N X       -       -       -       -       -       -       -       C       -       -       ReasonForTheRequestedProcedure
(0040,1004) N X       -       -       -       -       -       -       -       -       -       -       PatientTransportArrangements
(0040,1005) N X       -       -       -       -       -       -       -       -       -       -       RequestedProcedureLocation
(0040,100A) N X       -       -       -       -       -       -       -       C       -       -       ReasonForRequestedProcedureCodeSequence
(0040,1010) N X       -       -       -       -       -       -       -       -       -       -       NamesOfIntendedRecipientsOfResults
(0040,1011) N X       -       -       -       -       -       -       -       -       -       -       IntendedRecipientsOfResultsIdentificationSequence
(0040,1101) N D       -       -       -       -       -       -       -       -       -       -       PersonIdentificationCodeSequence
(0040,1102) N X       -       -       -       -       -       -       -       -       -       -       PersonAddress
(0040,1103) N X       -       -       -       -       -       -       -       -       -       -       PersonTelephoneNumbers
(0040,1104) N X       -       -       -       -       -       -       -       -       -       -       PersonTelecomInformation
(0040,1400) N X       -       -       -       -       -       -       -       C       -       -       RequestedProcedureComments
(0040,2001) Y X       -       -       -       -       -       -       -       C       -       -       ReasonForTheImagingServiceRequest
(0040,2008) N X       -       -       -       -       -       -       -       -       -       -       OrderEnteredBy
(0040,2009) N X       -       -       -       -       -       -       -       -       -       -       OrderEntererLocation
(0040,2010) N X       -       -       -       -       -       -       -       -       -       -       OrderCallbackPhoneNumber
(0040,2011) N X       -       -       -       -       -       -       -       -       -       -       OrderCallbackTelecomInformation
(0040,2016) N Z       -       -       -       -       -       -       -       -       -       -       PlacerOrderNumberImagingServiceRequest
(0040,2017) N Z       -       -       -       -       -       -       -       -       -       -       FillerOrderNumberImagingServiceRequest
(0040,2400) N X       -       -       -       -       -       -       -       C       -       -       ImagingServiceRequestComments
(0040,3001) N X       -       -       -       -       -       -       -       -       -       -       ConfidentialityConstraintOnPatientDataDescription
(0040,4005) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepStartDateTime
(0040,4008) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepExpirationDateTime
(0040,4010) N X       -       -       -       -       -       K       C       -       -       -       ScheduledProcedureStepModificationDateTime
(0040,4011) N X       -       -       -       -       -       K       C       -       -       -       ExpectedCompletionDateTime
(0040,4023) Y U       -       K       -       -       -       -       -       -       -       -       ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
(0040,4025) N X       -       -       K       -       -       -       -       -       -       -       ScheduledStationNameCodeSequence
(0040,4027) N X       -       -       K       -       -       -       -       -       -       -       ScheduledStationGeographicLocationCodeSequence
(0040,4028) N X       -       -       K       -       -       -       -       -       -       -       PerformedStationNameCodeSequence
(0040,4030) N X       -       -       K       -       -       -       -       -       -       -       PerformedStationGeographicLocationCodeSequence
(0040,4034) N X       -       -       -       -       -       -       -       -       -       -       ScheduledHumanPerformersSequence
(0040,4035) N X       -       -       -       -       -       -       -       -       -       -       ActualHumanPerformersSequence
(0040,4036) N X       -       -       -       -       -       -       -       -       -       -       HumanPerformerOrganization
(0040,4037) N X       -       -       -       -       -       -       -       -       -       -       HumanPerformerName
(0040,4050) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepStartDateTime
(0040,4051) N X       -       -       -       -       -       K       C       -       -       -       PerformedProcedureStepEndDateTime
(0040,4052) N X       -       -       -       -       -       K       C       -       -       -       ProcedureStepCancellationDateTime
(0040,A027) N D       -       -       -       -       -       -       -       -       -       -       VerifyingOrganization
(0040,A073) N D       -       -       -       -       -       -       -       -       -       -       VerifyingObserverSequence
(0040,A075) N D       -       -       -       -       -       -       -       -       -       -       VerifyingObserverName
(0040,A078) N X       -       -       -       -       -       -       -       -       -       -       AuthorObserverSequence
(0040,A07A) N X       -       -       -       -       -       -       -       -       -       -       ParticipantSequence
(0040,A07C) N X       -       -       -       -       -       -       -       -       -       -       CustodialOrganizationSequence
(0040,A088) N Z       -       -       -       -       -       -       -       -       -       -       VerifyingObserverIdentificationCodeSequence
(0040,A123) N D       -       -       -       -       -       -       -       -       -       -       PersonName
(0040,A124) N U       -       -       -       -       -       -       -       -       -       -       UID
(0040,A171) N U       -       K       -       -       -       -       -       -       -       -       ObservationUID
(0040,A172) Y U       -       K       -       -       -       -       -       -       -       -       ReferencedObservationUIDTrial
(0040,A192) Y X       -       -       -       -       -       K       C       -       -       -       ObservationDateTrial
(0040,A193) Y X       -       -       -       -       -       K       C       -       -       -       ObservationTimeTrial
(0040,A307) Y X       -       -       -       -       -       -       -       -       -       -       CurrentObserverTrial
(0040,A352) Y X       -       -       -       -       -       -       -       -       -       -       VerbalSourceTrial
(0040,A353) Y X       -       -       -       -       -       -       -       -       -       -       AddressTrial
(0040,A354) Y X       -       -       -       -       -       -       -       -       -       -       TelephoneNumberTrial
(0040,A358) Y X       -       -       -       -       -       -       -       -       -       -       VerbalSourceIdentifierCodeSequenceTrial
(0040,A402) Y U       -       K       -       -       -       -       -       -       -       -       ObservationSubjectUIDTrial
(0040,A730) N D       -       -       -       -       -       -       -       -       C       -       ContentSequence
(0040,DB0C) Y U       -       K       -       -       -       -       -       -       -       -       TemplateExtensionOrganizationUID
(0040,DB0D) Y U       -       K       -       -       -       -       -       -       -       -       TemplateExtensionCreatorUID
(0050,001B) N X       -       -       -       -       -       -       -       -       -       -       ContainerComponentID
(0050,0020) N X       -       -       K       -       -       -       -       -       -       -       DeviceDescription
(0050,0021) N X       -       -       -       -       -       -       -       C       -       -       LongDeviceDescription
(0062,0021) N U       -       K       -       -       -       -       -       -       -       -       TrackingUID
(0070,0001) N D       -       -       -       -       -       -       -       -       -       C       GraphicAnnotationSequence
(0070,0084) N Z/D     -       -       -       -       -       -       -       -       -       -       ContentCreatorName
(0070,0086) N X       -       -       -       -       -       -       -       -       -       -       ContentCreatorIdentificationCodeSequence
(0070,031A) N U       -       K       -       -       -       -       -       -       -       -       FiducialUID
(0070,1101) N U       -       K       -       -       -       -       -       -       -       -       PresentationDisplayCollectionUID
(0070,1102) N U       -       K       -       -       -       -       -       -       -       -       PresentationSequenceCollectionUID
(0088,0140) N U       -       K       -       -       -       -       -       -       -       -       StorageMediaFileSetUID
(0088,0200) N X       -       -       -       -       -       -       -       -       -       -       IconImageSequence
(0088,0904) Y X       -       -       -       -       -       -       -       -       -       -       TopicTitle
(0088,0906) Y X       -       -       -       -       -       -       -       -       -       -       TopicSubject
(0088,0910) Y X       -       -       -       -       -       -       -       -       -       -       TopicAuthor
(0088,0912) Y X       -       -       -       -       -       -       -       -       -       -       TopicKeywords
(0400,0100) N U       -       -       -       -       -       -       -       -       -       -       DigitalSignatureUID
(0400,0402) N X       -       -       -       -       -       -       -       -       -       -       ReferencedDigitalSignatureSequence
(0400,0403) N X       -       -       -       -       -       -       -       -       -       -       ReferencedSOPInstanceMACSequence
(0400,0404) N X       -       -       -       -       -       -       -       -       -       -       MAC
(0400,0550) N X       -       -       -       -       -       -       -       -       -       -       ModifiedAttributesSequence
(0400,0561) N X       -       -       -       -       -       -       -       -       -       -       OriginalAttributesSequence
(0400,0600) N X       -       -       -       -       -       -       -       -       -       -       InstanceOriginStatus
(2030,0020) N X       -       -       -       -       -       -       -       -       -       -       TextString
(2200,0002) N X/Z     -       -       -       -       -       -       -       C       -       -       LabelText
(2200,0005) N X/Z     -       -       -       -       -       -       -       -       -       -       BarcodeValue
(3006,0024) N U       -       K       -       -       -       -       -       -       -       -       ReferencedFrameOfReferenceUID
(3006,00C2) Y U       -       K       -       -       -       -       -       -       -       -       RelatedFrameOfReferenceUID
(3008,0054) N X/D     -       -       -       -       -       K       C       -       -       -       FirstTreatmentDate
(3008,0056) N X/D     -       -       -       -       -       K       C       -       -       -       MostRecentTreatmentDate
(3008,0105) N X/Z     -       -       K       -       -       -       -       -       -       -       SourceSerialNumber
(3008,0250) N X/D     -       -       -       -       -       K       C       -       -       -       TreatmentDate
(3008,0251) N X/D     -       -       -       -       -       K       C       -       -       -       TreatmentTime
(300A,0002) N D       -       -       -       -       -       -       -       C       -       -       RTPlanLabel
(300A,0003) N X       -       -       -       -       -       -       -       C       -       -       RTPlanName
(300A,0004) N X       -       -       -       -       -       -       -       C       -       -       RTPlanDescription
(300A,0006) N X/D     -       -       -       -       -       K       C       -       -       -       RTPlanDate
(300A,0007) N X/D     -       -       -       -       -       K       C       -       -       -       RTPlanTime
(300A,000E) N X       -       -       -       -       -       -       -       C       -       -       PrescriptionDescription
(300A,0013) N U       -       K       -       -       -       -       -       -       -       -       DoseReferenceUID
(300A,0016) N X       -       -       -       -       -       -       -       C       -       -       DoseReferenceDescription
(300A,0072) N X       -       -       -       -       -       -       -       C       -       -       FractionGroupDescription
(300A,0083) N U       -       K       -       -       -       -       -       -       -       -       ReferencedDoseReferenceUID
(300A,00B2) N X       -       -       K       -       -       -       -       -       -       -       TreatmentMachineName
(300A,00C3) N X       -       -       -       -       -       -       -       C       -       -       BeamDescription
(300A,00DD) N X       -       -       -       -       -       -       -       C       -       -       BolusDescription
(300A,0196) N X       -       -       -       -       -       -       -       C       -       -       FixationDeviceDescription
(300A,01A6) N X       -       -       -       -       -       -       -       C       -       -       ShieldingDeviceDescription
(300A,01B2) N X       -       -       -       -       -       -       -       C       -       -       SetupTechniqueDescription
(300A,0216) N X       -       -       K       -       -       -       -       -       -       -       SourceManufacturer
(300A,02EB) N X       -       -       -       -       -       -       -       C       -       -       CompensatorDescription
(300A,0608) N D       -       -       -       -       -       -       -       C       -       -       TreatmentPositionGroupLabel
(300A,0609) N U       -       K       -       -       -       -       -       -       -       -       TreatmentPositionGroupUID
(300A,0611) N Z       -       -       -       -       -       -       -       -       -       -       RTAccessoryHolderSlotID
(300A,0615) N Z       -       -       -       -       -       -       -       -       -       -       RTAccessoryDeviceSlotID
(300A,0619) N D       -       -       -       -       -       -       -       C       -       -       RadiationDoseIdentificationLabel
(300A,0623) N D       -       -       -       -       -       -       -       C       -       -       RadiationDoseInVivoMeasurementLabel
(300A,062A) N D       -       -       -       -       -       -       -       C       -       -       RTToleranceSetLabel
(300A,0650) N U       -       K       -       -       -       -       -       -       -       -       PatientSetupUID
(300A,0676) N X       -       -       -       -       -       -       -       C       -       -       EquipmentFrameOfReferenceDescription
(300A,067C) N D       -       -       -       -       -       -       -       C       -       -       RadiationGenerationModeLabel
(300A,067D) N Z       -       -       -       -       -       -       -       C       -       -       RadiationGenerationModeDescription
(300A,0700) N U       -       K       -       -       -       -       -       -       -       -       TreatmentSessionUID
(300A,0734) N D       -       -       -       -       -       -       -       C       -       -       TreatmentToleranceViolationDescription
(300A,0736) N D       -       -       -       -       -       K       C       -       -       -       TreatmentToleranceViolationDateTime
(300A,073A) N D       -       -       -       -       -       K       C       -       -       -       RecordedRTControlPointDateTime
(300A,0741) N D       -       -       -       -       -       K       C       -       -       -       InterlockDateTime
(300A,0742) N D       -       -       -       -       -       -       -       C       -       -       InterlockDescription
(300A,0760) N D       -       -       -       -       -       K       C       -       -       -       OverrideDateTime
(300A,0783) N D       -       -       -       -       -       -       -       C       -       -       InterlockOriginDescription
(300C,0113) N X       -       -       -       -       -       -       -       C       -       -       ReasonForOmissionDescription
(300E,0008) N X/Z     -       -       -       -       -       -       -       -       -       -       ReviewerName
(3010,0006) N U       -       K       -       -       -       -       -       -       -       -       ConceptualVolumeUID
(3010,000B) N U       -       K       -       -       -       -       -       -       -       -       ReferencedConceptualVolumeUID
(3010,000F) N Z       -       -       -       -       -       -       -       C       -       -       ConceptualVolumeCombinationDescription
(3010,0013) N U       -       K       -       -       -       -       -       -       -       -       ConstituentConceptualVolumeUID
(3010,0015) N U       -       K       -       -       -       -       -       -       -       -       SourceConceptualVolumeUID
(3010,0017) N Z       -       -       -       -       -       -       -       C       -       -       ConceptualVolumeDescription
(3010,001B) N Z       -       -       -       -       -       -       -       -       -       -       DeviceAlternateIdentifier
(3010,002D) N D       -       -       K       -       -       -       -       -       -       -       DeviceLabel
(3010,0031) N U       -       K       -       -       -       -       -       -       -       -       ReferencedFiducialsUID
(3010,0033) N D       -       -       -       -       -       -       -       C       -       -       UserContentLabel
(3010,0034) N D       -       -       -       -       -       -       -       C       -       -       UserContentLongLabel
(3010,0035) N D       -       -       -       -       -       -       -       C       -       -       EntityLabel
(3010,0036) N X       -       -       -       -       -       -       -       C       -       -       EntityName
(3010,0037) N X       -       -       -       -       -       -       -       C       -       -       EntityDescription
(3010,0038) N D       -       -       -       -       -       -       -       C       -       -       EntityLongLabel
(3010,003B) N U       -       K       -       -       -       -       -       -       -       -       RTTreatmentPhaseUID
(3010,0043) N Z       -       -       K       -       -       -       -       -       -       -       ManufacturerDeviceIdentifier
(3010,004C) N X/D     -       -       -       -       -       K       C       -       -       -       IntendedPhaseStartDate
(3010,004D) N X/D     -       -       -       -       -       K       C       -       -       -       IntendedPhaseEndDate
(3010,0054) N D       -       -       -       -       -       -       -       C       -       -       RTPrescriptionLabel
(3010,0056) N X/D     -       -       -       -       -       -       -       C       -       -       RTTreatmentApproachLabel
(3010,005A) N Z       -       -       -       -       -       -       -       C       -       -       RTPhysicianIntentNarrative
(3010,005C) N Z       -       -       -       -       -       -       -       C       -       -       ReasonForSuperseding
(3010,0061) N X       -       -       -       -       -       -       -       C       -       -       PriorTreatmentDoseDescription
(3010,006E) N U       -       K       -       -       -       -       -       -       -       -       DosimetricObjectiveUID
(3010,006F) N U       -       K       -       -       -       -       -       -       -       -       ReferencedDosimetricObjectiveUID
(3010,0077) N D       -       -       -       -       -       -       -       C       -       -       TreatmentSite
(3010,007A) N Z       -       -       -       -       -       -       -       C       -       -       TreatmentTechniqueNotes
(3010,007B) N Z       -       -       -       -       -       -       -       C       -       -       PrescriptionNotes
(3010,007F) N Z       -       -       -       -       -       -       -       C       -       -       FractionationNotes
(3010,0081) N Z       -       -       -       -       -       -       -       C       -       -       PrescriptionNotesSequence
(4000,0010) Y X       -       -       -       -       -       -       -       -       -       -       Arbitrary
(4000,4000) Y X       -       -       -       -       -       -       -       -       -       -       TextComments
(4008,0042) Y X       -       -       -       -       -       -       -       -       -       -       ResultsIDIssuer
(4008,0102) Y X       -       -       -       -       -       -       -       -       -       -       InterpretationRecorder
(4008,010A) Y X       -       -       -       -       -       -       -       -       -       -       InterpretationTranscriber
(4008,010B) Y X       -       -       -       -       -       -       -       C       -       -       InterpretationText
(4008,010C) Y X       -       -       -       -       -       -       -       -       -       -       InterpretationAuthor
(4008,0111) Y X       -       -       -       -       -       -       -       -       -       -       InterpretationApproverSequence
(4008,0114) Y X       -       -       -       -       -       -       -       -       -       -       PhysicianApprovingInterpretation
(4008,0115) Y X       -       -       -       -       -       -       -       C       -       -       InterpretationDiagnosisDescription
(4008,0118) Y X       -       -       -       -       -       -       -       -       -       -       ResultsDistributionListSequence
(4008,0119) Y X       -       -       -       -       -       -       -       -       -       -       DistributionName
(4008,011A) Y X       -       -       -       -       -       -       -       -       -       -       DistributionAddress
(4008,0202) Y X       -       -       -       -       -       -       -       -       -       -       InterpretationIDIssuer
(4008,0300) Y X       -       -       -       -       -       -       -       C       -       -       Impressions
(4008,4000) Y X       -       -       -       -       -       -       -       C       -       -       ResultsComments
(50xx,xxxx) Y X       -       -       -       -       -       -       -       -       -       C       CurveData
(60xx,3000) N X       -       -       -       -       -       -       -       -       -       C       OverlayData
(60xx,4000) Y X       -       -       -       -       -       -       -       -       -       C       OverlayComments
(FFFA,FFFA) N X       -       -       -       -       -       -       -       -       -       -       DigitalSignaturesSequence
(FFFC,FFFC) N X       -       -       -       -       -       -       -       -       -       -       DataSetTrailingPadding
(gggg,eeee) N X       C       -       -       -       -       -       -       -       -       -       PrivateAttributes(oddgroup)
"""
